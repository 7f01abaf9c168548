//! What each rule tag and saved audience reads of the others, so that they are evaluated in
//! dependency order and a definition that would depend on itself is refused.
//!
//! ```text
//! audience a ── SUPPRESS b, in_audience('b'), FROM b ──> audience b
//!            └─ has_tag('t'), tag = 't' (t a rule tag) ──> rule tag t ──> ...
//! ```
//!
//! Uses are read from the planned (not yet analyzed) query: `has_tag(...)` and `in_audience(...)`
//! calls with their names as literals, comparisons of a `tag` column with literals (the long form
//! of `has_tag`), and scans of an audience's table. A definition that no longer plans (it names
//! something dropped since) has no uses here; it fails when it is evaluated.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};

use crate::audience::evaluate::plan_query;
use crate::audience::statement::Body;
use crate::error::{Error, Result};
use crate::query::QuerySession;
use crate::query::sugar::{HAS_TAG, IN_AUDIENCE};
use crate::store::catalog::Catalog;
use crate::tables::TAG;

/// A rule tag or a saved audience (their names are separate: a tag and an audience may share one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    Tag(String),
    Audience(String),
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Tag(n) => write!(f, "tag {n}"),
            Node::Audience(n) => write!(f, "audience {n}"),
        }
    }
}

/// The names a query reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Uses {
    /// Names given to `has_tag()` (checked to exist: a typo would silently match no one).
    pub has_tag: BTreeSet<String>,
    /// Every tag name the query compares with (has_tag's included).
    pub tags: BTreeSet<String>,
    /// Audiences read through `in_audience()` or their tables.
    pub audiences: BTreeSet<String>,
}

/// What `plan` reads; `catalog` tells which scanned tables are audiences.
pub fn uses_of_plan(plan: &LogicalPlan, catalog: &Catalog) -> Uses {
    let mut uses = Uses::default();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            // SQL folds unquoted table names to lower case: `FROM Winback` scans `winback`.
            let table = scan.table_name.table();
            let audience = catalog
                .audience(table)
                .or_else(|| catalog.audiences.iter().find(|a| a.name.to_lowercase() == table.to_lowercase()));
            if let Some(a) = audience {
                uses.audiences.insert(a.name.clone());
            }
        }
        node.apply_expressions(|e| {
            e.apply(|e| {
                collect(e, &mut uses);
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    });
    uses
}

fn collect(e: &Expr, uses: &mut Uses) {
    match e {
        Expr::ScalarFunction(f) if f.name() == HAS_TAG => {
            for name in f.args.iter().filter_map(text) {
                uses.has_tag.insert(name.clone());
                uses.tags.insert(name);
            }
        }
        Expr::ScalarFunction(f) if f.name() == IN_AUDIENCE => {
            uses.audiences.extend(f.args.iter().filter_map(text));
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            for (a, b) in [(left, right), (right, left)] {
                if is_tag_column(a)
                    && let Some(name) = text(b)
                {
                    uses.tags.insert(name);
                }
            }
        }
        Expr::InList(list) if is_tag_column(&list.expr) => {
            uses.tags.extend(list.list.iter().filter_map(text));
        }
        _ => {}
    }
}

fn is_tag_column(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == TAG)
}

fn text(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(v, _) => v.try_as_str().flatten().map(str::to_string),
        _ => None,
    }
}

/// Who reads whom, over a catalog.
#[derive(Debug, Default, Clone)]
pub struct Graph {
    edges: BTreeMap<Node, BTreeSet<Node>>,
}

impl Graph {
    /// The graph of `catalog`, each definition planned in `session`.
    pub async fn of(session: &QuerySession, catalog: &Catalog) -> Graph {
        let mut graph = Graph::default();
        for tag in &catalog.tags {
            let uses = uses_of_query(session, &tag.query, catalog).await.unwrap_or_default();
            graph.set(Node::Tag(tag.name.clone()), edges(&uses, &[], catalog));
        }
        for audience in &catalog.audiences {
            let uses = uses_of_query(session, &audience.query, catalog).await.unwrap_or_default();
            graph.set(Node::Audience(audience.name.clone()), edges(&uses, &audience.suppress_audiences, catalog));
        }
        graph
    }

    /// Replaces what `node` reads.
    pub fn set(&mut self, node: Node, reads: BTreeSet<Node>) {
        self.edges.insert(node, reads);
    }

    /// What `node` reads directly.
    pub fn reads(&self, node: &Node) -> impl Iterator<Item = &Node> {
        self.edges.get(node).into_iter().flatten()
    }

    /// A path from `node` back to itself (`[node, ..., node]`), if there is one.
    pub fn cycle_through(&self, node: &Node) -> Option<Vec<Node>> {
        let mut path = vec![node.clone()];
        let mut seen = BTreeSet::new();
        self.find(node, node, &mut path, &mut seen).then_some(path)
    }

    fn find(&self, from: &Node, target: &Node, path: &mut Vec<Node>, seen: &mut BTreeSet<Node>) -> bool {
        for next in self.reads(from) {
            path.push(next.clone());
            if next == target {
                return true;
            }
            if seen.insert(next.clone()) && self.find(next, target, path, seen) {
                return true;
            }
            path.pop();
        }
        false
    }

    /// `chosen` ordered so that each comes after everything it reads, directly or through others
    /// (not chosen ones included); otherwise in the given order. A cycle (possible only in a
    /// store written before cycles were refused) is broken where it is met.
    pub fn order(&self, chosen: &[Node]) -> Vec<Node> {
        let wanted: BTreeSet<&Node> = chosen.iter().collect();
        let mut done = BTreeSet::new();
        let mut out = Vec::with_capacity(chosen.len());
        for node in chosen {
            self.visit(node, &wanted, &mut done, &mut BTreeSet::new(), &mut out);
        }
        out
    }

    fn visit(
        &self,
        node: &Node,
        wanted: &BTreeSet<&Node>,
        done: &mut BTreeSet<Node>,
        active: &mut BTreeSet<Node>,
        out: &mut Vec<Node>,
    ) {
        if done.contains(node) || !active.insert(node.clone()) {
            return;
        }
        for next in self.reads(node) {
            self.visit(next, wanted, done, active, out);
        }
        active.remove(node);
        done.insert(node.clone());
        if wanted.contains(node) {
            out.push(node.clone());
        }
    }
}

/// The catalog nodes `uses` (and `suppress`) point at: rule tags and saved audiences only.
pub fn edges(uses: &Uses, suppress: &[String], catalog: &Catalog) -> BTreeSet<Node> {
    let tags = uses.tags.iter().filter(|t| catalog.tag(t).is_some()).map(|t| Node::Tag(t.clone()));
    let audiences = uses
        .audiences
        .iter()
        .chain(suppress)
        .filter(|a| catalog.audience(a).is_some())
        .map(|a| Node::Audience(a.clone()));
    tags.chain(audiences).collect()
}

/// Plans `query` in `session` and reads its uses.
pub async fn uses_of_query(session: &QuerySession, query: &str, catalog: &Catalog) -> Result<Uses> {
    let origin = Body { text: query.to_string(), line: 1, column: 1 };
    let plan = plan_query(session, query, &origin, 0).await?;
    Ok(uses_of_plan(&plan, catalog))
}

/// Refuses a definition of `node` that reads `reads` when that closes a cycle in `graph`.
pub fn refuse_cycle(graph: &Graph, node: &Node, reads: BTreeSet<Node>) -> Result<()> {
    let mut graph = graph.clone();
    graph.set(node.clone(), reads);
    match graph.cycle_through(node) {
        None => Ok(()),
        Some(path) => {
            let path = path.iter().map(Node::to_string).collect::<Vec<_>>().join(" → ");
            Err(Error::Usage(format!(
                "{node} would depend on itself ({path}); a tag or audience cannot read itself, through SUPPRESS, in_audience or has_tag"
            )))
        }
    }
}

/// Refuses `has_tag()` of a tag that is neither loaded nor a rule tag (nor `defining`, which is
/// refused as a cycle instead).
pub fn refuse_unknown_tags(uses: &Uses, loaded: &[String], catalog: &Catalog, defining: Option<&str>) -> Result<()> {
    let missing: Vec<&String> = uses
        .has_tag
        .iter()
        .filter(|t| !loaded.contains(t) && catalog.tag(t).is_none() && Some(t.as_str()) != defining)
        .collect();
    match missing.as_slice() {
        [] => Ok(()),
        [one] => Err(Error::Usage(format!(
            "has_tag('{one}'): there is no tag '{one}' (SHOW TAGS lists them; create a rule tag before the rules that read it)"
        ))),
        many => Err(Error::Usage(format!(
            "has_tag: there are no tags {} (SHOW TAGS lists them; create a rule tag before the rules that read it)",
            many.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: &str) -> Node {
        Node::Audience(n.into())
    }

    fn t(n: &str) -> Node {
        Node::Tag(n.into())
    }

    fn graph(edges: &[(Node, &[Node])]) -> Graph {
        let mut g = Graph::default();
        for (n, reads) in edges {
            g.set(n.clone(), reads.iter().cloned().collect());
        }
        g
    }

    #[test]
    fn order_puts_what_is_read_first() {
        // allu suppresses sup_src, created before it; x reads allu through a rule tag.
        let g = graph(&[
            (a("allu"), &[a("sup_src")]),
            (a("sup_src"), &[]),
            (t("mid"), &[a("allu")]),
            (a("x"), &[t("mid")]),
        ]);
        assert_eq!(g.order(&[a("x"), a("allu"), a("sup_src")]), vec![a("sup_src"), a("allu"), a("x")]);
        assert_eq!(g.order(&[a("sup_src"), a("allu")]), vec![a("sup_src"), a("allu")]);
    }

    #[test]
    fn cycles_are_found_and_named() {
        let g = graph(&[(a("allu"), &[a("sup_src")]), (a("sup_src"), &[])]);
        let err = refuse_cycle(&g, &a("sup_src"), [a("allu")].into_iter().collect()).unwrap_err().to_string();
        assert!(err.contains("audience sup_src → audience allu → audience sup_src"), "{err}");
        assert!(refuse_cycle(&g, &a("other"), [a("allu")].into_iter().collect()).is_ok());
        let err = refuse_cycle(&g, &t("me"), [t("me")].into_iter().collect()).unwrap_err().to_string();
        assert!(err.contains("tag me → tag me"), "{err}");
        // A cycle left by an old store does not hang the ordering.
        let old = graph(&[(a("p"), &[a("q")]), (a("q"), &[a("p")])]);
        assert_eq!(old.order(&[a("p"), a("q")]).len(), 2);
    }
}
