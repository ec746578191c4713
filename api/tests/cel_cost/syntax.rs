//! CEL rules as the cost estimator needs them: a tokenizer and a recursive-descent parser for
//! the CEL grammar minus what Herald's rules do not use (struct literals, optional syntax,
//! `cel.bind`). Operators become calls named as cel-go names them (`_&&_`, `_[_]`, `@in`), so
//! the estimator can follow cel-go's overload table; literals keep only what costs depend on,
//! the length of strings.

/// A parsed rule. Operators are calls, named as cel-go names them.
#[derive(Debug)]
pub enum Expr {
    /// A string literal of this many characters.
    Str(u64),
    /// A bytes literal of this many characters.
    Bytes(u64),
    /// A number, `true`, `false` or `null`.
    Scalar,
    /// `self`, `oldSelf` or a macro's variable.
    Ident(String),
    /// `operand.field`.
    Select(Box<Expr>, String),
    /// Function name, target (`t.f()`), arguments.
    Call(String, Option<Box<Expr>>, Vec<Expr>),
    /// `[a, b]`.
    List(Vec<Expr>),
    /// `{k: v}`.
    Map(Vec<(Expr, Expr)>),
}

/// Parses one rule.
pub fn parse(rule: &str) -> Result<Expr, String> {
    Parser::new(rule)?.parse_all()
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num,
    Str(u64),
    Bytes(u64),
    Scalar,
    Op(&'static str),
}

const OPS: [&str; 25] = [
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", "[", "]",
    "{", "}", ".", ",", "?", ":", "in",
];

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let cs: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    'next: while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && cs.get(i + 1) == Some(&'/') {
            while i < cs.len() && cs[i] != '\n' {
                i += 1;
            }
            continue;
        }
        // String and bytes literals, with r/b prefixes and triple quotes.
        let mut j = i;
        let (mut raw, mut bytes) = (false, false);
        while j < cs.len() && j - i < 2 && matches!(cs[j], 'r' | 'R' | 'b' | 'B') {
            raw |= matches!(cs[j], 'r' | 'R');
            bytes |= matches!(cs[j], 'b' | 'B');
            j += 1;
        }
        if j < cs.len() && matches!(cs[j], '\'' | '"') {
            let q = cs[j];
            let triple = cs.get(j + 1) == Some(&q) && cs.get(j + 2) == Some(&q);
            let delim = if triple { 3 } else { 1 };
            let start = j + delim;
            let mut k = start;
            loop {
                if k >= cs.len() {
                    return Err("unterminated string literal".into());
                }
                if !raw && cs[k] == '\\' {
                    k += 2;
                    continue;
                }
                if cs[k..].starts_with(&vec![q; delim]) {
                    break;
                }
                k += 1;
            }
            let len = (k - start) as u64;
            out.push(if bytes {
                Tok::Bytes(len)
            } else {
                Tok::Str(len)
            });
            i = k + delim;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && cs.get(i + 1).is_some_and(char::is_ascii_digit)) {
            if cs[i..].starts_with(&['0', 'x']) || cs[i..].starts_with(&['0', 'X']) {
                i += 2;
                while i < cs.len() && cs[i].is_ascii_hexdigit() {
                    i += 1;
                }
            } else {
                while i < cs.len() && cs[i].is_ascii_digit() {
                    i += 1;
                }
                if cs.get(i) == Some(&'.') && cs.get(i + 1).is_some_and(char::is_ascii_digit) {
                    i += 1;
                    while i < cs.len() && cs[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                if matches!(cs.get(i), Some('e' | 'E')) {
                    i += 1;
                    if matches!(cs.get(i), Some('+' | '-')) {
                        i += 1;
                    }
                    while i < cs.len() && cs[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            if matches!(cs.get(i), Some('u' | 'U')) {
                i += 1;
            }
            out.push(Tok::Num);
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < cs.len() && (cs[i].is_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
            let word: String = cs[start..i].iter().collect();
            out.push(match word.as_str() {
                "true" | "false" | "null" => Tok::Scalar,
                "in" => Tok::Op("in"),
                _ => Tok::Ident(word),
            });
            continue;
        }
        for op in OPS {
            if op != "in" && cs[i..].starts_with(&op.chars().collect::<Vec<_>>()) {
                out.push(Tok::Op(op));
                i += op.len();
                continue 'next;
            }
        }
        return Err(format!("unexpected character {c:?}"));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn new(src: &str) -> Result<Self, String> {
        Ok(Parser {
            toks: lex(src)?,
            pos: 0,
        })
    }

    fn parse_all(mut self) -> Result<Expr, String> {
        let e = self.expr()?;
        match self.toks.get(self.pos) {
            None => Ok(e),
            Some(t) => Err(format!("unexpected {t:?} after the expression")),
        }
    }

    fn peek_op(&self, op: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Op(o)) if *o == op)
    }

    fn eat(&mut self, op: &str) -> bool {
        let found = self.peek_op(op);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.eat(op) {
            Ok(())
        } else {
            Err(format!("expected {op:?} at {:?}", self.toks.get(self.pos)))
        }
    }

    fn call(name: &str, args: Vec<Expr>) -> Expr {
        Expr::Call(name.to_owned(), None, args)
    }

    /// `or ? or : expr`
    fn expr(&mut self) -> Result<Expr, String> {
        let c = self.binary(0)?;
        if !self.eat("?") {
            return Ok(c);
        }
        let t = self.binary(0)?;
        self.expect(":")?;
        let f = self.expr()?;
        Ok(Self::call("_?_:_", vec![c, t, f]))
    }

    /// Left-associative binary operators by precedence: `||`, `&&`, relations, `+ -`, `* / %`.
    fn binary(&mut self, level: usize) -> Result<Expr, String> {
        const LEVELS: [&[&str]; 5] = [
            &["||"],
            &["&&"],
            &["==", "!=", "<", "<=", ">", ">=", "in"],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut lhs = self.binary(level + 1)?;
        'more: loop {
            for op in LEVELS[level] {
                if self.eat(op) {
                    let rhs = self.binary(level + 1)?;
                    let name = if *op == "in" {
                        "@in".to_owned()
                    } else {
                        format!("_{op}_")
                    };
                    lhs = Self::call(&name, vec![lhs, rhs]);
                    continue 'more;
                }
            }
            return Ok(lhs);
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat("!") {
            return Ok(Self::call("!_", vec![self.unary()?]));
        }
        if self.eat("-") {
            // `-5` is a literal in CEL's grammar; `-x` a call.
            if self.toks.get(self.pos) == Some(&Tok::Num) {
                self.pos += 1;
                return self.member(Expr::Scalar);
            }
            return Ok(Self::call("-_", vec![self.unary()?]));
        }
        let p = self.primary()?;
        self.member(p)
    }

    fn member(&mut self, mut e: Expr) -> Result<Expr, String> {
        loop {
            if self.eat(".") {
                let name = self.ident()?;
                if self.eat("(") {
                    let args = self.list_until(")")?;
                    e = Expr::Call(name, Some(Box::new(e)), args);
                } else {
                    e = Expr::Select(Box::new(e), name);
                }
            } else if self.eat("[") {
                let index = self.expr()?;
                self.expect("]")?;
                e = Self::call("_[_]", vec![e, index]);
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let tok = self
            .toks
            .get(self.pos)
            .cloned()
            .ok_or("unexpected end of the rule")?;
        self.pos += 1;
        match tok {
            Tok::Num | Tok::Scalar => Ok(Expr::Scalar),
            Tok::Str(n) => Ok(Expr::Str(n)),
            Tok::Bytes(n) => Ok(Expr::Bytes(n)),
            Tok::Ident(name) => {
                if self.eat("(") {
                    Ok(Expr::Call(name, None, self.list_until(")")?))
                } else if self.peek_op("{") {
                    Err(format!("struct literal {name}{{..}} is not modelled"))
                } else {
                    Ok(Expr::Ident(name))
                }
            }
            Tok::Op("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Op("[") => Ok(Expr::List(self.list_until("]")?)),
            Tok::Op("{") => {
                let mut entries = Vec::new();
                while !self.eat("}") {
                    let k = self.expr()?;
                    self.expect(":")?;
                    entries.push((k, self.expr()?));
                    if !self.eat(",") {
                        self.expect("}")?;
                        break;
                    }
                }
                Ok(Expr::Map(entries))
            }
            Tok::Op(op) => Err(format!("unexpected {op:?}")),
        }
    }

    /// Comma-separated expressions up to `close` (a trailing comma allowed).
    fn list_until(&mut self, close: &str) -> Result<Vec<Expr>, String> {
        let mut items = Vec::new();
        while !self.eat(close) {
            items.push(self.expr()?);
            if !self.eat(",") {
                self.expect(close)?;
                break;
            }
        }
        Ok(items)
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                Ok(name)
            }
            t => Err(format!("expected a name, found {t:?}")),
        }
    }
}
