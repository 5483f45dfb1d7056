"""MATH answer equivalence: Hendrycks-style string normalisation, then a guarded sympy check.

sympy's own LaTeX parser needs antlr4 4.11 (4.13 is installed and rejected) or lark (absent), so
the small LaTeX subset that MATH answers use is parsed here straight into sympy objects. Building
the objects directly (never ``eval``/``parse_expr`` on model output) keeps the check safe, and
checking every exponent before it is evaluated stops towers like ``10^{10^{10^{10}}}`` before
they allocate; a wall-clock timeout covers whatever slow simplification is left.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable

from jaxft.eval.answer_forms import is_text_answer, set_form, text_equal

SYMPY_TIMEOUT_S = 2.0

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def _balanced_group(text: str, open_at: int) -> int | None:
    """Index just past the brace group opening at text[open_at] == '{', or None if unclosed."""
    depth = 0
    for i in range(open_at, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last well-formed ``\\boxed{...}``/``\\fbox{...}`` (nested braces kept).

    A box that a generation cut off mid-way ("\\boxed{12") is skipped in favour of an earlier
    complete one, so a truncated repetition does not hide an answer already given.
    """
    starts = sorted(m.start() for cmd in _BOX_COMMANDS for m in re.finditer(re.escape(cmd), text))
    for start in reversed(starts):
        cmd = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
        i = start + len(cmd)
        if i < len(text) and text[i].isalpha():  # e.g. \boxedstuff: another command
            continue
        j = i
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            end = _balanced_group(text, j)
            if end is not None:
                return text[j + 1:end - 1].strip()
        elif j > i:  # "\boxed 5$": old-style box without braces, runs to the next '$'
            return text[j:].split("$")[0].strip()
    return None


# ---------------------------------------------------------------------------------------------
# String normalisation (after Hendrycks et al., "Measuring Mathematical Problem Solving", 2021)
# ---------------------------------------------------------------------------------------------

_TEXT_CMDS = r"\\(?:text|textbf|textit|mbox|mathrm|mathbf|textnormal|operatorname)"


def _fix_fracs(s: str) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1{2} and \\frac{1}2 likewise (spaces already removed)."""
    out, i = [], 0
    while True:
        j = s.find("\\frac", i)
        if j < 0:
            out.append(s[i:])
            return "".join(out)
        out.append(s[i:j + 5])
        i = j + 5
        for _ in range(2):
            if i >= len(s):
                break
            if s[i] == "{":
                end = _balanced_group(s, i)
                if end is None:
                    break
                out.append(s[i:end])
                i = end
            elif s[i] == "\\":  # a command argument, e.g. \frac\pi2: leave as written
                break
            else:
                out.append("{" + s[i] + "}")
                i += 1


def _strip_outer_braces(s: str) -> str:
    while len(s) >= 2 and s[0] == "{" and _balanced_group(s, 0) == len(s):
        s = s[1:-1]
    return s


def normalize_math_answer(answer: str) -> str:
    """Canonical string form of a MATH answer; equal strings mean equal answers."""
    s = answer.strip()
    s = s.replace("\n", "").replace("\\!", "")
    s = re.sub(r"(?<!\\)\\[,;:> ]", "", s)  # thin/medium spaces, not the "\\ " row break
    s = s.replace("\\\\", "\\")
    s = re.sub(r"\\[dtc]frac", r"\\frac", s)
    s = re.sub(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\(?:displaystyle|textstyle)(?![a-zA-Z])", "", s)
    s = s.replace("{,}", "")  # 10{,}000
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ", "", s).replace("\\circ", "").replace("°", "")
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub("(" + _TEXT_CMDS + r")\s+\{", r"\1{", s)  # "\text {cm}" is "\text{cm}"
    s = re.sub(r"\s*,?\s*" + _TEXT_CMDS + r"\{\s*and\s*\}\s*", ",", s)  # "19 \text{ and } 43"
    # Units: "\text{ cm}" (Hendrycks: text preceded by a space is a unit) or a plain number
    # followed by a one-word \text{...} (optionally squared/cubed).
    s = re.sub(_TEXT_CMDS + r"\{\s[^{}]*\}(\^\{?\d\}?)?\s*$", "", s)
    s = re.sub(r"^([^\\]*\d)\s*" + _TEXT_CMDS + r"\{[a-zA-Z\s.]+\}(\^\{?\d\}?)?\s*$", r"\1", s)
    for _ in range(3):  # unwrap the rest, e.g. \text{(C)} -> (C); nested at most a few deep
        s = re.sub(_TEXT_CMDS + r"\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.strip().rstrip(".").strip()
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    parts = s.split("=")
    if len(parts) == 2 and len(parts[0].strip()) <= 2:  # "x = 5" -> "5"
        s = parts[1]
    s = re.sub(r"\\sqrt(?![a-zA-Z\[{\s])(.)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    s = re.sub(r"\\sqrt([a-zA-Z0-9])", r"\\sqrt{\1}", s)  # "\sqrt 2" once spaces are gone
    s = _fix_fracs(s)
    s = _strip_outer_braces(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    m = re.fullmatch(r"(-?\d+)/(\d+)", s)
    if m:
        s = f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}"
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    return s.rstrip(".")


# ---------------------------------------------------------------------------------------------
# LaTeX subset -> sympy
# ---------------------------------------------------------------------------------------------

class _Unsupported(Exception):
    """The answer uses LaTeX this parser does not handle; the comparison is then False."""


_MAX_EXPONENT = 10_000

_TOKEN_RE = re.compile(r"\s*(?:(\d+\.\d*|\.\d+|\d+)|(\\[a-zA-Z]+)|(\\[{}])|(\S))")

_CONSTANTS = {"\\pi": "pi", "\\infty": "oo"}
_FUNCTIONS = ("\\sin", "\\cos", "\\tan", "\\sec", "\\csc", "\\cot", "\\ln", "\\log", "\\exp",
              "\\arcsin", "\\arccos", "\\arctan")
_KNOWN_COMMANDS = sorted({*_CONSTANTS, *_FUNCTIONS, "\\frac", "\\sqrt", "\\cdot", "\\times",
                          "\\div"}, key=len, reverse=True)


def _tokenize(s: str) -> list[str]:
    tokens = []
    for m in _TOKEN_RE.finditer(s):
        num, cmd, brace, ch = m.groups()
        if cmd:
            # Spaces were stripped by the normaliser, so "\pi r" arrives as "\pir": split off the
            # longest known command and read the remaining letters as variables.
            known = next((k for k in _KNOWN_COMMANDS if cmd.startswith(k)), None)
            if known is None:
                raise _Unsupported(cmd)
            tokens.append(known)
            tokens.extend(cmd[len(known):])
        else:
            tokens.append(num or brace or ch)
    return tokens


class _Parser:
    """Recursive descent over tokens: sums, products (explicit or implicit), powers, atoms."""

    def __init__(self, tokens: list[str]):
        import sympy

        self.sp = sympy
        self.toks = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise _Unsupported(f"expected {expected!r}, got {tok!r}")
        self.pos += 1
        return tok

    def parse(self):
        expr = self.expr()
        if self.peek() is not None:
            raise _Unsupported(f"trailing {self.peek()!r}")
        return expr

    def expr(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def _starts_atom(self, tok: str | None) -> bool:
        if tok is None:
            return False
        return (tok[0].isdigit() or tok[0] == "." or tok.isalpha() or tok in ("(", "{", "[")
                or tok in _CONSTANTS or tok in _FUNCTIONS or tok in ("\\frac", "\\sqrt"))

    def term(self):
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                value = value * self.unary()
            elif tok in ("/", "\\div"):
                self.take()
                value = value / self.unary()
            elif self._starts_atom(tok):  # implicit product: 2x, 3\sqrt{2}, x(x+1)
                value = value * self.power()
            else:
                return value

    def unary(self):
        if self.peek() == "-":
            self.take()
            return -self.unary()
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() == "^":
            self.take()
            exponent = self.script()
            return _checked_pow(self.sp, base, exponent)
        return base

    def script(self):
        """A superscript or macro argument: a braced group, or one token (one digit of a number)."""
        tok = self.peek()
        if tok == "{":
            return self.group()
        if tok == "-":
            self.take()
            return -self.script()
        if tok is not None and tok[0].isdigit() and len(tok) > 1:
            # LaTeX reads x^23 as x^2 * 3: take the first digit, leave the rest for the product.
            self.toks[self.pos] = tok[1:]
            return self.sp.Integer(int(tok[0]))
        return self.atom()

    def group(self):
        self.take("{")
        value = self.expr()
        self.take("}")
        return value

    def atom(self):
        sp = self.sp
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return sp.Rational(tok.rstrip(".") or "0")  # exact: 0.5 equals \frac{1}{2}
        if tok.isalpha() and len(tok) == 1:
            return sp.I if tok == "i" else sp.Symbol(tok)
        if tok in ("(", "["):
            value = self.expr()
            self.take(")" if tok == "(" else "]")
            return value
        if tok == "{":
            self.pos -= 1
            return self.group()
        if tok in _CONSTANTS:
            return getattr(sp, _CONSTANTS[tok])
        if tok == "\\frac":
            num = self.script()
            den = self.script()
            return num / den
        if tok == "\\sqrt":
            if self.peek() == "[":
                self.take("[")
                index = self.expr()
                self.take("]")
                return _checked_pow(sp, self.script(), 1 / index)
            return sp.sqrt(self.script())
        if tok in _FUNCTIONS:
            fn = {"\\ln": sp.log, "\\arcsin": sp.asin, "\\arccos": sp.acos,
                  "\\arctan": sp.atan}.get(tok) or getattr(sp, tok[1:])
            return fn(self.power())
        raise _Unsupported(tok)


def _checked_pow(sp, base, exponent):
    """base**exponent, refusing numeric exponents large enough to blow up memory or time."""
    if exponent.is_number:
        try:
            too_big = abs(complex(exponent.evalf(15))) > _MAX_EXPONENT
        except (TypeError, ValueError):
            too_big = True
        if too_big and base not in (sp.Integer(0), sp.Integer(1), sp.Integer(-1)):
            raise _Unsupported("exponent too large")
    return sp.Pow(base, exponent)


def latex_to_sympy(s: str):
    """Parse a normalised MATH answer into a sympy expression; raises ValueError if unsupported."""
    try:
        return _Parser(_tokenize(s)).parse()
    except (_Unsupported, ZeroDivisionError, TypeError, ValueError, RecursionError) as e:
        raise ValueError(f"cannot parse {s!r}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Equivalence
# ---------------------------------------------------------------------------------------------

def _split_top_level(s: str, sep: str = ",") -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        ch = s[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(sep, i) and not (sep[-1].isalpha() and
                                                          s[i + len(sep):i + len(sep) + 1].isalpha()):
            parts.append(s[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    parts.append(s[start:])
    return parts


def _as_collection(s: str) -> tuple[str, list[str]]:
    """(kind, elements): kind is 'set' or 'union' (unordered) or the bracket pair of a
    tuple/interval; 'one' for a single element."""
    union = _split_top_level(s, "\\cup")
    if len(union) > 1:
        return "union", union
    if s.startswith("\\{") and s.endswith("\\}"):
        return "set", _split_top_level(s[2:-2])
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        depth = 0
        for i, ch in enumerate(s):
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth == 0 and i < len(s) - 1:
                break  # the first bracket closes early: "(1)(2)" is not one tuple
        else:
            inner = _split_top_level(s[1:-1])
            if len(inner) > 1:
                return s[0] + s[-1], inner
    parts = _split_top_level(s)
    return ("set" if len(parts) > 1 else "one"), parts


def _expr_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    if a.count("=") == 1 and b.count("=") == 1:
        (la, ra), (lb, rb) = a.split("="), b.split("=")
        return _expr_equal(la, lb) and _expr_equal(ra, rb)
    if ("=" in a) != ("=" in b):  # "x=3" among solutions "x=3,x=5" against the value 3
        lhs, _, rhs = (a if "=" in a else b).partition("=")
        if "=" not in rhs and re.fullmatch(r"[a-zA-Z](?:_\{?\w+\}?)?", lhs):
            return _expr_equal(rhs, b if "=" in a else a)
        return False
    try:
        x, y = latex_to_sympy(a), latex_to_sympy(b)
    except ValueError:
        return False
    import sympy

    if x == y:
        return True
    diff = sympy.expand(x - y)  # cheap, settles polynomials before the costly simplify
    if diff == 0:
        return True
    diff = sympy.simplify(diff)
    if diff == 0:
        return True
    if not (x.free_symbols or y.free_symbols):
        try:
            d, ref = complex(sympy.N(diff, 30)), complex(sympy.N(y, 30))
        except (TypeError, ValueError):
            return False
        return abs(d) <= 1e-9 * max(1.0, abs(ref))
    return False


def _structured_equal(a: str, b: str) -> bool:
    kind_a, parts_a = _as_collection(a)
    kind_b, parts_b = _as_collection(b)
    if kind_a == "set" and len(parts_a) == 1 and kind_b == "one":  # "\{5\}" is the answer 5
        return _structured_equal(parts_a[0], b)
    if kind_b == "set" and len(parts_b) == 1 and kind_a == "one":
        return _structured_equal(a, parts_b[0])
    if kind_a != kind_b or len(parts_a) != len(parts_b):
        return False
    if kind_a == "one":
        return _expr_equal(a, b)
    if kind_a not in ("set", "union"):  # tuple or interval: order matters
        return all(_structured_equal(x, y) for x, y in zip(parts_a, parts_b))
    remaining = list(parts_b)
    for x in parts_a:
        match = next((y for y in remaining if _structured_equal(x, y)), None)
        if match is None:
            return False
        remaining.remove(match)
    return True


class _Timeout(Exception):
    pass


def call_with_timeout(fn: Callable[[], bool], seconds: float) -> bool | None:
    """fn() or None if it ran longer than `seconds`.

    In the main thread a SIGALRM timer interrupts sympy's pure-Python loops; elsewhere the call
    runs in a daemon thread that is abandoned on timeout (the exponent guard keeps those rare).
    """
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        def _raise(signum, frame):
            raise _Timeout

        previous = signal.signal(signal.SIGALRM, _raise)
        outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
        started = time.monotonic()
        try:
            return fn()
        except _Timeout:
            return None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if outer_delay:  # give back a caller's own pending alarm
                left = outer_delay - (time.monotonic() - started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), outer_interval)
    box: list = []
    worker = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    worker.start()
    worker.join(seconds)
    return box[0] if box else None


def math_equiv(pred: str | None, ref: str | None, *, timeout: float = SYMPY_TIMEOUT_S) -> bool:
    """True when two MATH answers are the same after normalisation or provably equal in sympy.

    Text answers (words, names, choice letters) compare as text; inequalities and "x \\in S"
    compare as the interval or set they describe (see `jaxft.eval.answer_forms`).
    """
    if pred is None or ref is None:
        return False
    a, b = normalize_math_answer(pred), normalize_math_answer(ref)
    if a == b:
        return bool(a)
    if not a or not b:
        return False
    a, b = set_form(a), set_form(b)
    if a == b:
        return True
    if is_text_answer(pred, a) or is_text_answer(ref, b):
        return text_equal(a, b)

    import sympy  # noqa: F401 - the first import takes about a second: keep it off the clock

    def check() -> bool:
        try:
            return _structured_equal(a, b)
        except (ValueError, TypeError, ZeroDivisionError, RecursionError, AttributeError):
            return False

    return bool(call_with_timeout(check, timeout))

