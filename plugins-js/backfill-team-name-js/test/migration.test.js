// Native tests of the migrate-mongo port: the team names are looked up once
// in begin, copied by _id, and a missing team is a report.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as g from 'godwit-sdk';
import { Harness } from 'godwit-sdk/testing';
import * as plugin from '../migration.js';

const team = new g.ObjectId('65a000000000000000000001');
const gone = new g.ObjectId('65a0000000000000000000ff');

test("members get their team's name; a missing team is reported", () => {
  const h = new Harness(plugin).collection('teams', [{ _id: team, name: 'Platform' }]);
  const actions = h.process(0, [
    { _id: 1, team_id: team },
    { _id: 2, team_id: gone },
  ]);
  assert.deepEqual(actions, [
    g.setFields('members', 1, { team_name: 'Platform' }),
    g.report('unresolved', gone.toHexString(), `member 2: no team ${gone.toHexString()}`),
  ]);
});

test('the pass reads only members without a team name, and writes only members', () => {
  const m = g.manifestOf(plugin);
  assert.deepEqual(m.passes[0].filter, { team_id: { $exists: true }, team_name: { $exists: false } });
  assert.deepEqual(m.passes[0].writes, ['members']);
  assert.deepEqual(m.reads, ['teams'], 'the lookup of teams is declared');
});
