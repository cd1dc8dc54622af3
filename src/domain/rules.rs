//! Rules in CEL (the Common Expression Language, via the `cel` crate): segment rules, offer
//! eligibility and the arbitration priority. Compiled once at load; evaluated per decision.
//!
//! Variables a rule may read:
//! - `profile`: the user's attributes plus aggregates (`purchase_count`, `monetary_total`,
//!   `events` (map event type -> count), `days_since_last_seen`, `days_since_first_seen`,
//!   `days_since_last_purchase` (absent when never), `cart_abandoned`). Numbers are doubles.
//! - `context`: the request's context map. `stage` (string), `lapsed` (bool), `now` (timestamp).
//! - `scores`: model outputs, `churn`, `purchase`, and per offer `response`; a score whose
//!   model is not loaded is absent, so reading it is an error and the rule counts as false.
//! - `offer` (eligibility and priority only): `id`, `name`, `value`, `cost`, `weight`,
//!   `priority`, `stages`, `channels`, `content_ref`.
//!
//! A rule that fails at run time (a missing attribute or score) counts as false, and the
//! reason is reported in explanations. Load rejects syntax errors (with the position),
//! unknown variables, and type errors found by evaluating the rule against a probe profile.
use super::offer::Offer;
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, ExecutionError, Program, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The variables a rule may name; any other is rejected at compile time.
pub const VARIABLES: [&str; 7] = ["profile", "context", "scores", "offer", "stage", "lapsed", "now"];

/// What a rule must evaluate to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A condition (segments, eligibility, targeting).
    Bool,
    /// A number (a priority).
    Number,
}

/// A compiled CEL rule, checked at load against a probe user.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's text, as written in the config.
    pub source: String,
    program: Arc<Program>,
    expect: Expect,
}

thread_local! {
    /// The root context with CEL's standard functions: costly to build (tens of µs), so once
    /// per thread; each decision adds its variables in a cheap child scope.
    static ROOT: Context<'static, 'static> = Context::default();
}

/// Runs `f` with a scope holding `vars` on top of the standard functions.
pub fn with_scope<R>(vars: Vec<(&'static str, Value)>, f: impl FnOnce(&Context) -> R) -> R {
    ROOT.with(|root| {
        let mut scope = root.new_inner_scope();
        for (name, value) in vars {
            scope.add_variable_from_value(name, value);
        }
        f(&scope)
    })
}

/// A value converted once into the interpreter's representation. Binding a `Value` to a
/// scope converts it deeply (about 1.5 µs for a 9-field map), so per-offer values are
/// prepared at load and lent to each decision's scope without copying.
pub struct Prepared(Box<dyn Val>);

impl Prepared {
    /// Prepares a plain value (maps, lists, scalars); panics on anything else.
    pub fn new(v: Value) -> Self {
        Prepared(v.try_into().expect("plain maps, lists and scalars convert"))
    }
}

impl Clone for Prepared {
    fn clone(&self) -> Self {
        Prepared(self.0.clone_as_boxed())
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Lends one prepared value to a scope under a name.
struct Lend<'a> {
    name: &'static str,
    value: &'a dyn Val,
}

impl VariableResolver for Lend<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        (variable == self.name).then_some(CowVal::Borrowed(self.value))
    }
}

/// Runs `f` in a child of `ctx` where `offer` is the prepared offer (and `scores`, when
/// given, replaces the decision's scores, e.g. to add the offer's response score).
pub fn with_offer<R>(ctx: &Context, offer: &Prepared, scores: Option<Value>, f: impl FnOnce(&Context) -> R) -> R {
    let lend = Lend { name: "offer", value: offer.0.as_ref() };
    let mut scope = ctx.new_inner_scope();
    scope.set_variable_resolver(&lend);
    if let Some(s) = scores {
        scope.add_variable_from_value("scores", s);
    }
    f(&scope)
}

/// A CEL map from string keys.
pub fn map(pairs: impl IntoIterator<Item = (String, Value)>) -> Value {
    let m: HashMap<String, Value> = pairs.into_iter().collect();
    m.into()
}

/// A CEL string.
pub fn string(s: &str) -> Value {
    Value::String(Arc::new(s.to_string()))
}

/// The `offer` variable of an offer (built once at load).
pub fn offer_value(o: &Offer) -> Value {
    let list = |v: &[String]| Value::List(Arc::new(v.iter().map(|s| string(s)).collect()));
    map([
        ("id".to_string(), string(&o.id)),
        ("name".to_string(), string(&o.name)),
        ("content_ref".to_string(), string(&o.content_ref)),
        ("value".to_string(), Value::Float(o.value)),
        ("cost".to_string(), Value::Float(o.cost)),
        ("weight".to_string(), Value::Float(o.weight)),
        ("priority".to_string(), Value::Float(o.priority)),
        ("stages".to_string(), list(&o.stages)),
        ("channels".to_string(), list(&o.channels)),
    ])
}

fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no value for {k:?}"),
        other => other.to_string(),
    }
}

impl Rule {
    /// Compiles `source`; `allow_offer` says whether the rule may read `offer`.
    pub fn compile(source: &str, expect: Expect, allow_offer: bool) -> Result<Rule, String> {
        let program = Program::compile(source).map_err(|e| e.to_string().replace("<input>", "rule"))?;
        let refs = program.references();
        for v in refs.variables() {
            if !VARIABLES.contains(&v) {
                return Err(format!("unknown variable {v:?} (rules may read {})", VARIABLES.join(", ")));
            }
            if v == "offer" && !allow_offer {
                return Err("a segment rule cannot read `offer` (it is evaluated once per user)".into());
            }
        }
        let rule = Rule { source: source.to_string(), program: Arc::new(program), expect };
        rule.probe()?;
        Ok(rule)
    }

    /// The `profile` fields the rule reads (`profile.x`, `has(profile.x)`, `profile['x']`), or
    /// None when it uses `profile` otherwise (e.g. `'x' in profile`) and so may read any.
    pub fn profile_fields(&self) -> Option<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        profile_fields(self.program.expression(), &mut out).then_some(out)
    }

    /// Evaluates against a probe user that has every aggregate and score but no attributes:
    /// type errors surface now; a missing attribute does not (it may exist at run time).
    fn probe(&self) -> Result<(), String> {
        let probe_offer = Offer {
            id: "probe".into(),
            name: "probe".into(),
            stages: vec!["probe".into()],
            channels: vec!["web".into()],
            placements: vec![],
            content_ref: "probe".into(),
            priority: 1.0,
            value: 1.0,
            cost: 0.0,
            weight: 1.0,
            valid_from: None,
            valid_until: None,
        };
        let scores = map(["churn", "purchase", "response"].map(|s| (s.to_string(), Value::Float(0.5))));
        let profile = map([
            "purchase_count",
            "monetary_total",
            "days_since_last_seen",
            "days_since_first_seen",
            "days_since_last_purchase",
        ]
        .map(|s| (s.to_string(), Value::Float(1.0)))
        .into_iter()
        .chain([("events".to_string(), map([])), ("cart_abandoned".to_string(), Value::Bool(false))]));
        let vars = vec![
            ("profile", profile),
            ("context", map([])),
            ("scores", scores),
            ("offer", offer_value(&probe_offer)),
            ("stage", string("probe")),
            ("lapsed", Value::Bool(false)),
            ("now", Value::Timestamp(chrono::DateTime::UNIX_EPOCH.fixed_offset())),
        ];
        with_scope(vars, |ctx| match self.program.execute(ctx) {
            Err(ExecutionError::NoSuchKey(_)) => Ok(()),
            Err(e) => Err(format!("type error: {}", describe(&e))),
            Ok(v) => self.check_type(&v).map(|_| ()),
        })
    }

    fn check_type(&self, v: &Value) -> Result<f64, String> {
        match (self.expect, v) {
            (Expect::Bool, Value::Bool(b)) => Ok(f64::from(u8::from(*b))),
            (Expect::Number, Value::Float(x)) => Ok(*x),
            (Expect::Number, Value::Int(x)) => Ok(*x as f64),
            (Expect::Number, Value::UInt(x)) => Ok(*x as f64),
            (Expect::Bool, other) => Err(format!("must evaluate to a bool, got {:?}", other.type_of())),
            (Expect::Number, other) => Err(format!("must evaluate to a number, got {:?}", other.type_of())),
        }
    }

    /// True/false, or why it could not be evaluated.
    pub fn eval_bool(&self, ctx: &Context) -> Result<bool, String> {
        let v = self.program.execute(ctx).map_err(|e| describe(&e))?;
        self.check_type(&v).map(|x| x != 0.0)
    }

    /// The number it evaluates to (finite), or why it could not be evaluated.
    pub fn eval_number(&self, ctx: &Context) -> Result<f64, String> {
        let v = self.program.execute(ctx).map_err(|e| describe(&e))?;
        let x = self.check_type(&v)?;
        if x.is_finite() { Ok(x) } else { Err(format!("evaluated to {x}")) }
    }
}

/// Adds the `profile` fields `e` reads to `out`; false when it uses `profile` other than by
/// naming a field (a bare `profile`, a computed index, a comprehension variable so named).
fn profile_fields(e: &cel::common::ast::IdedExpr, out: &mut BTreeSet<String>) -> bool {
    use cel::common::ast::{Expr, LiteralValue, operators};
    const PROFILE: &str = "profile";

    match &e.expr {
        Expr::Ident(name) => name != PROFILE,
        Expr::Select(s) => match &s.operand.expr {
            Expr::Ident(name) if name == PROFILE => {
                out.insert(s.field.clone());
                true
            }
            _ => profile_fields(&s.operand, out),
        },
        Expr::Call(c) => {
            if c.func_name == operators::INDEX
                && let [target, key] = &c.args[..]
                && matches!(&target.expr, Expr::Ident(name) if name == PROFILE)
            {
                return match &key.expr {
                    Expr::Literal(LiteralValue::String(k)) => {
                        out.insert(k.inner().to_string());
                        true
                    }
                    _ => false,
                };
            }
            all_fields(c.target.iter().map(|t| &**t).chain(&c.args), out)
        }
        Expr::Comprehension(c) => {
            c.iter_var != PROFILE
                && c.accu_var != PROFILE
                && c.iter_var2.as_deref() != Some(PROFILE)
                && all_fields([&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result], out)
        }
        Expr::List(l) => all_fields(&l.elements, out),
        Expr::Map(m) => all_fields(m.entries.iter().flat_map(entry_exprs), out),
        Expr::Struct(s) => all_fields(s.entries.iter().flat_map(entry_exprs), out),
        Expr::Literal(_) | Expr::Unspecified => true,
    }
}

fn all_fields<'a>(es: impl IntoIterator<Item = &'a cel::common::ast::IdedExpr>, out: &mut BTreeSet<String>) -> bool {
    es.into_iter().all(|e| profile_fields(e, out))
}

fn entry_exprs(e: &cel::common::ast::IdedEntryExpr) -> Vec<&cel::common::ast::IdedExpr> {
    match &e.expr {
        cel::common::ast::EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
        cel::common::ast::EntryExpr::StructField(f) => vec![&f.value],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_names_the_profile_fields_it_reads_or_says_it_may_read_any() {
        let fields = |src: &str| {
            Rule::compile(src, Expect::Bool, true).unwrap().profile_fields().map(|f| f.into_iter().collect::<Vec<_>>())
        };
        let some = |names: &[&str]| Some(names.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(fields("profile.age >= 30.0 && profile.country in ['FR', 'DE']"), some(&["age", "country"]));
        assert_eq!(fields("has(profile.vip) && profile['tier'] == 'gold'"), some(&["tier", "vip"]));
        assert_eq!(fields("profile.interests.contains('books') || scores.churn > 0.5"), some(&["interests"]));
        assert_eq!(fields("[profile.age][0] > 1.0 && {'a': profile.b}['a'] == 1.0"), some(&["age", "b"]));
        assert_eq!(fields("stage == 'retention' && offer.value > 1.0"), some(&[]));
        // `profile` used whole, or indexed by a computed key: any attribute may be read.
        assert_eq!(fields("'vip' in profile"), None);
        assert_eq!(fields("profile[stage] == true"), None);
        assert_eq!(fields("size(profile) > 3"), None);
    }

    fn check(source: &str, expect: Expect, allow_offer: bool, error: Option<&str>) {
        match (Rule::compile(source, expect, allow_offer), error) {
            (Ok(_), None) => {}
            (Err(e), Some(want)) => assert!(e.contains(want), "{source}: {e:?} should contain {want:?}"),
            (got, want) => panic!("{source}: got {got:?}, want error {want:?}"),
        }
    }

    #[test]
    fn load_time_checks() {
        check("profile.age >= 30.0 && profile.country in ['FR', 'DE']", Expect::Bool, false, None);
        check("profile.interests.contains('books')", Expect::Bool, false, None);
        check("scores.response * offer.value * offer.weight", Expect::Number, true, None);
        check("profile.age >= ", Expect::Bool, false, Some("rule:1:16"));
        check("user.age > 3.0", Expect::Bool, false, Some("unknown variable \"user\""));
        check("offer.value > 1.0", Expect::Bool, false, Some("cannot read `offer`"));
        check("profile.purchase_count + 1", Expect::Number, false, Some("type error"));
        check("profile.purchase_count", Expect::Bool, false, Some("must evaluate to a bool"));
        check("stage == 'retention'", Expect::Number, true, Some("must evaluate to a number"));
    }

    #[test]
    fn run_time_missing_values_are_errors_not_panics() {
        let r = Rule::compile("scores.churn > 0.5", Expect::Bool, false).unwrap();
        let no_models = with_scope(vec![("scores", map([]))], |ctx| r.eval_bool(ctx));
        assert_eq!(no_models, Err("no value for \"churn\"".to_string()));
        let with =
            with_scope(vec![("scores", map([("churn".to_string(), Value::Float(0.7))]))], |ctx| r.eval_bool(ctx));
        assert_eq!(with, Ok(true));
    }
}
