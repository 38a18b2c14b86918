// A migrate-mongo migration ported to godwit (plugin-sdk/js/README.md, "From
// migrate-mongo to godwit"): every member gets its team's name copied into
// `team_name`; a member whose team does not exist is reported, not guessed.
import * as g from 'godwit-sdk';

export const manifest = new g.Manifest('backfill-team-name', '1.4.0', {
  requires: '^1.3',
  description: "members.team_name from the member's team",
  // `teams` is no pass's collection: begin's lookup of it is declared here,
  // for the operator to review (godwit refuses undeclared lookups).
  reads: ['teams'],
}).pass(
  new g.Pass('members', 'members', {
    filter: { team_id: { $exists: true }, team_name: { $exists: false } },
    projection: { team_id: 1 },
    writes: ['members'],
  }),
);

let names;

export function begin(params) {
  names = new Map(g.findAll('teams', {}, { name: 1 }).map((t) => [String(t._id), t.name]));
}

export function process(passIndex, members) {
  return members.map((m) => {
    const name = names.get(String(m.team_id));
    return name
      ? g.setFields('members', m._id, { team_name: name })
      : g.report('unresolved', String(m.team_id), `member ${m._id}: no team ${m.team_id}`);
  });
}
