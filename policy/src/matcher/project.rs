//! Projections as `find` applies them: inclusion or exclusion (never both,
//! `_id` aside), `_id` kept unless excluded, dotted paths through documents
//! and arrays, `$slice`, and `$elemMatch` through the filter matcher.

use super::{Num, Result, elem_match_form, elem_matches, integral, number, unsupported};
use bson::{Bson, Document};

/// One projection path's effect.
#[derive(Debug, Clone)]
enum Node {
    Include,
    Exclude,
    /// `$slice`: skip (negative: from the end) and limit.
    Slice(i64, Option<i64>),
    ElemMatch(Document),
    Children(Vec<(String, Node)>),
}

fn node_get<'a>(nodes: &'a [(String, Node)], key: &str) -> Option<&'a Node> {
    nodes.iter().find(|(k, _)| k == key).map(|(_, n)| n)
}

/// Adds `path` to the tree; the server refuses a path that is a prefix of
/// another ("path collision").
fn insert(nodes: &mut Vec<(String, Node)>, path: &str, node: Node) -> Result<()> {
    let collision = || unsupported(format!("projection path collision at `{path}` (the server refuses it)"));
    match path.split_once('.') {
        None => {
            if node_get(nodes, path).is_some() {
                return collision();
            }
            nodes.push((path.to_string(), node));
            Ok(())
        }
        Some((head, rest)) => {
            if node_get(nodes, head).is_none() {
                nodes.push((head.to_string(), Node::Children(Vec::new())));
            }
            match nodes.iter_mut().find(|(k, _)| k == head).map(|(_, n)| n) {
                Some(Node::Children(children)) => insert(children, rest, node),
                _ => collision(),
            }
        }
    }
}

/// `doc` as `find` returns it under `projection`: an inclusion projection
/// keeps the named paths (and `_id` unless `_id: 0`), an exclusion one drops
/// them; dotted paths go through documents and arrays (an inclusion keeps
/// an array's documents, projected, and drops its other values); `$slice`
/// cuts an array in place; `$elemMatch` keeps the first matching element,
/// placed after the other fields. A projection the server would refuse
/// (inclusion and exclusion mixed, colliding paths) is an error.
pub fn project(doc: &Document, projection: &Document) -> Result<Document> {
    let mut tree = Vec::new();
    let mut keep_id = None;
    let (mut includes, mut excludes, mut slices) = (false, false, false);
    for (path, spec) in projection {
        let node = match spec {
            Bson::Boolean(b) => {
                if *b {
                    Node::Include
                } else {
                    Node::Exclude
                }
            }
            Bson::Document(d) if d.len() == 1 && d.contains_key("$slice") => {
                slices = true;
                match d.get("$slice").expect("checked") {
                    Bson::Array(a) if a.len() == 2 => {
                        let skip = integral(path, "$slice", &a[0])?;
                        let limit = integral(path, "$slice", &a[1])?;
                        if limit <= 0 {
                            return unsupported(format!(
                                "`$slice` on `{path}` with a limit of {limit} (the server refuses it)"
                            ));
                        }
                        Node::Slice(skip, Some(limit))
                    }
                    n => Node::Slice(integral(path, "$slice", n)?, None),
                }
            }
            Bson::Document(d) if d.len() == 1 && d.contains_key("$elemMatch") => {
                if path.contains('.') {
                    return unsupported(format!("`$elemMatch` projection on the dotted path `{path}`"));
                }
                match d.get("$elemMatch") {
                    Some(Bson::Document(sub)) => {
                        elem_match_form(path, sub)?;
                        Node::ElemMatch(sub.clone())
                    }
                    _ => return unsupported(format!("`$elemMatch` on `{path}` takes a document")),
                }
            }
            n => match number(n)? {
                Some(Num::Int(0)) => Node::Exclude,
                Some(Num::Float(0.0)) => Node::Exclude,
                Some(_) => Node::Include,
                None => return unsupported(format!("`{path}` is projected with {n}")),
            },
        };
        if path == "_id" {
            match node {
                Node::Include => keep_id = Some(true),
                Node::Exclude => keep_id = Some(false),
                _ => return unsupported("`$slice` or `$elemMatch` on `_id`"),
            }
            continue;
        }
        match node {
            Node::Include | Node::ElemMatch(_) => includes = true,
            Node::Exclude => excludes = true,
            _ => {}
        }
        insert(&mut tree, path, node)?;
    }
    if includes && excludes {
        return unsupported("projection mixes inclusion and exclusion (the server refuses it)");
    }
    let inclusion = includes || (keep_id == Some(true) && !slices);
    let mut out = Document::new();
    let mut last = Vec::new();
    for (key, value) in doc {
        if key == "_id" {
            if keep_id.unwrap_or(true) {
                out.insert(key, value.clone());
            }
            continue;
        }
        let node = node_get(&tree, key);
        match (inclusion, node) {
            (true, None) | (false, Some(Node::Exclude)) => {}
            (false, None) => {
                out.insert(key, value.clone());
            }
            (true, Some(Node::Exclude)) => unreachable!("mixed projections are refused above"),
            (_, Some(Node::ElemMatch(sub))) => {
                if let Bson::Array(items) = value {
                    let form = elem_match_form(key, sub)?;
                    for item in items {
                        if elem_matches(form, key, sub, item)? {
                            last.push((key.clone(), Bson::Array(vec![item.clone()])));
                            break;
                        }
                    }
                }
            }
            (_, Some(node)) => {
                if let Some(v) = apply(inclusion, node, value)? {
                    out.insert(key, v);
                }
            }
        }
    }
    out.extend(last);
    Ok(out)
}

/// `node` applied to `value`; `None` drops it.
fn apply(inclusion: bool, node: &Node, value: &Bson) -> Result<Option<Bson>> {
    Ok(match node {
        Node::Include => Some(value.clone()),
        Node::Exclude => None,
        Node::Slice(skip, limit) => Some(slice(value, *skip, *limit)),
        Node::ElemMatch(_) => unreachable!("`$elemMatch` is top-level only"),
        Node::Children(children) => match value {
            Bson::Document(d) => Some(Bson::Document(sub_document(inclusion, children, d)?)),
            Bson::Array(items) => {
                let mut kept = Vec::new();
                for item in items {
                    match item {
                        Bson::Document(_) | Bson::Array(_) => {
                            if let Some(v) = apply(inclusion, node, item)? {
                                kept.push(v);
                            }
                        }
                        other if !inclusion => kept.push(other.clone()),
                        _ => {}
                    }
                }
                Some(Bson::Array(kept))
            }
            other if !inclusion => Some(other.clone()),
            _ => None,
        },
    })
}

fn sub_document(inclusion: bool, nodes: &[(String, Node)], doc: &Document) -> Result<Document> {
    let mut out = Document::new();
    for (key, value) in doc {
        match node_get(nodes, key) {
            None if inclusion => {}
            None => {
                out.insert(key, value.clone());
            }
            Some(node) => {
                if let Some(v) = apply(inclusion, node, value)? {
                    out.insert(key, v);
                }
            }
        }
    }
    Ok(out)
}

fn slice(value: &Bson, skip: i64, limit: Option<i64>) -> Bson {
    let Bson::Array(items) = value else {
        return value.clone();
    };
    let len = items.len() as i64;
    let (start, count) = match limit {
        None if skip >= 0 => (0, skip),
        None => ((len + skip).max(0), len),
        Some(limit) if skip >= 0 => (skip.min(len), limit),
        Some(limit) => ((len + skip).max(0), limit),
    };
    Bson::Array(
        items
            .iter()
            .skip(start as usize)
            .take(count.max(0) as usize)
            .cloned()
            .collect(),
    )
}
