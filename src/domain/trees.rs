//! Gradient-boosted tree ensembles: the serialisable tree list a `gbdt` artifact carries, its
//! checks, and the compiled form the server walks when it scores a user (no I/O).
use serde::{Deserialize, Serialize};

/// One node of a regression tree, as stored in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    /// Goes to `left` when the raw feature value is `<= threshold`, else (and for NaN) to `right`.
    Split {
        /// Position of the feature in the artifact's `feature_names`.
        feature: usize,
        /// Threshold in the feature's raw (unstandardised) units.
        threshold: f64,
        /// Index of the left child in the tree's node list.
        left: usize,
        /// Index of the right child in the tree's node list.
        right: usize,
    },
    /// A leaf: its value is added to the log-odds (the learning rate is already applied).
    Leaf(f64),
}

/// A regression tree: its root is node 0, children always come after their parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// The nodes, root first.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Checks the tree is well formed for `n_features` features: every split names a known
    /// feature and a finite threshold, children point forward (no cycles) and inside the list,
    /// every leaf value is finite.
    pub fn check(&self, n_features: usize) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("empty tree".into());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            match *node {
                Node::Split { feature, threshold, left, right } => {
                    if feature >= n_features {
                        return Err(format!("node {i} splits on feature {feature} of {n_features}"));
                    }
                    if !threshold.is_finite() {
                        return Err(format!("node {i} has a non-finite threshold"));
                    }
                    for child in [left, right] {
                        if child <= i || child >= self.nodes.len() {
                            return Err(format!("node {i} points at node {child} (tree of {})", self.nodes.len()));
                        }
                    }
                }
                Node::Leaf(v) if !v.is_finite() => return Err(format!("node {i} has a non-finite leaf value")),
                Node::Leaf(_) => {}
            }
        }
        Ok(())
    }

    /// The leaf value this tree gives a raw row in feature order.
    pub fn value(&self, row: &[f64]) -> f64 {
        let mut i = 0;
        loop {
            match self.nodes[i] {
                Node::Split { feature, threshold, left, right } => {
                    i = if row[feature] <= threshold { left } else { right };
                }
                Node::Leaf(v) => return v,
            }
        }
    }

    /// Depth of the deepest leaf (a lone leaf has depth 0).
    pub fn depth(&self) -> usize {
        fn go(t: &Tree, i: usize) -> usize {
            match t.nodes[i] {
                Node::Split { left, right, .. } => 1 + go(t, left).max(go(t, right)),
                Node::Leaf(_) => 0,
            }
        }
        go(self, 0)
    }
}

/// The log-odds of a raw row: `base` plus every tree's leaf value.
pub fn margin(base: f64, trees: &[Tree], row: &[f64]) -> f64 {
    trees.iter().fold(base, |acc, t| acc + t.value(row))
}

/// How many splits use each feature (a simple importance for reports).
pub fn split_counts(trees: &[Tree], n_features: usize) -> Vec<usize> {
    let mut counts = vec![0; n_features];
    for node in trees.iter().flat_map(|t| &t.nodes) {
        if let Node::Split { feature, .. } = node
            && *feature < n_features
        {
            counts[*feature] += 1;
        }
    }
    counts
}

/// A node of the compiled ensemble: a leaf when `feature == LEAF` (its value in `threshold`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Flat {
    feature: u32,
    left: u32,
    threshold: f64,
}

const LEAF: u32 = u32::MAX;

/// Trees flattened into one array with features remapped to the scorer's vector, so that
/// scoring is a tight loop over contiguous nodes (the right child is always `left + 1`).
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    nodes: Vec<Flat>,
    roots: Vec<u32>,
}

impl Compiled {
    /// Compiles checked trees; `index[f]` is where artifact feature `f` sits in the input vector.
    pub fn new(trees: &[Tree], index: &[usize]) -> Self {
        let mut nodes = Vec::new();
        let mut roots = Vec::with_capacity(trees.len());
        for t in trees {
            roots.push(nodes.len() as u32);
            // Lay children out side by side so a split needs one child index.
            let base = nodes.len();
            nodes.push(Flat { feature: LEAF, left: 0, threshold: 0.0 });
            let mut queue = vec![(0usize, base)];
            while let Some((src, dst)) = queue.pop() {
                nodes[dst] = match t.nodes[src] {
                    Node::Split { feature, threshold, left, right } => {
                        let l = nodes.len();
                        nodes.push(Flat { feature: LEAF, left: 0, threshold: 0.0 });
                        nodes.push(Flat { feature: LEAF, left: 0, threshold: 0.0 });
                        queue.push((left, l));
                        queue.push((right, l + 1));
                        Flat { feature: index[feature] as u32, left: l as u32, threshold }
                    }
                    Node::Leaf(v) => Flat { feature: LEAF, left: 0, threshold: v },
                };
            }
        }
        Self { nodes, roots }
    }

    /// `base` plus the trees' leaf values for the input vector `x` (summed in tree order, as
    /// [`margin`] does, so both give the same bits).
    pub fn margin(&self, base: f64, x: &[f64]) -> f64 {
        let mut sum = base;
        for &root in &self.roots {
            let mut n = &self.nodes[root as usize];
            while n.feature != LEAF {
                // Written as a negation so that NaN goes right, as in `Tree::value`.
                #[allow(clippy::neg_cmp_op_on_partial_ord)]
                let go_right = !(x[n.feature as usize] <= n.threshold);
                n = &self.nodes[n.left as usize + usize::from(go_right)];
            }
            sum += n.threshold;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 <= 1 ? (x1 <= 0 ? 0.5 : -0.25) : 2.0
    fn small() -> Tree {
        Tree {
            nodes: vec![
                Node::Split { feature: 0, threshold: 1.0, left: 1, right: 2 },
                Node::Split { feature: 1, threshold: 0.0, left: 3, right: 4 },
                Node::Leaf(2.0),
                Node::Leaf(0.5),
                Node::Leaf(-0.25),
            ],
        }
    }

    #[test]
    fn tree_scoring_matches_hand_computed_values() {
        let t = small();
        assert_eq!(t.value(&[1.0, 0.0]), 0.5, "equal to the threshold goes left");
        assert_eq!(t.value(&[0.0, 3.0]), -0.25);
        assert_eq!(t.value(&[1.5, -9.0]), 2.0);
        assert_eq!(t.value(&[f64::NAN, 0.0]), 2.0, "NaN goes right");
        let stump = Tree { nodes: vec![Node::Leaf(0.1)] };
        let m = margin(-1.0, &[t.clone(), stump.clone()], &[0.0, 3.0]);
        assert!((m - (-1.0 - 0.25 + 0.1)).abs() < 1e-15);
        assert_eq!(t.depth(), 2);
        assert_eq!(split_counts(&[t], 3), vec![1, 1, 0]);
    }

    #[test]
    fn compiled_trees_score_like_the_tree_list_with_remapped_features() {
        let trees = vec![small(), Tree { nodes: vec![Node::Leaf(0.1)] }, small()];
        // Artifact feature 0 is input 2, feature 1 is input 0.
        let c = Compiled::new(&trees, &[2, 0]);
        for (a, b) in [(1.0, 0.0), (0.0, 3.0), (1.5, -9.0), (f64::NAN, 0.0), (-4.0, 0.5)] {
            let want = margin(0.0, &trees, &[a, b]);
            assert_eq!(c.margin(0.0, &[b, 7.0, a]), want, "row ({a}, {b})");
        }
    }

    #[test]
    fn check_rejects_malformed_trees() {
        assert!(small().check(2).is_ok());
        assert!(small().check(1).unwrap_err().contains("feature 1"));
        let mut cyclic = small();
        cyclic.nodes[1] = Node::Split { feature: 1, threshold: 0.0, left: 0, right: 4 };
        assert!(cyclic.check(2).unwrap_err().contains("points at node 0"));
        let mut outside = small();
        outside.nodes[1] = Node::Split { feature: 1, threshold: 0.0, left: 3, right: 9 };
        assert!(outside.check(2).is_err());
        let mut nan = small();
        nan.nodes[2] = Node::Leaf(f64::NAN);
        assert!(nan.check(2).unwrap_err().contains("leaf"));
        assert!(Tree { nodes: vec![] }.check(2).is_err());
    }

    #[test]
    fn tree_json_is_the_documented_shape() {
        let json = serde_json::to_value(small()).unwrap();
        assert_eq!(json["nodes"][0]["split"]["threshold"], 1.0);
        assert_eq!(json["nodes"][2]["leaf"], 2.0);
        let back: Tree = serde_json::from_value(json).unwrap();
        assert_eq!(back, small());
    }
}
