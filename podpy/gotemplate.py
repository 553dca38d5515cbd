"""A Go text/template engine (lexer, parser, executor) for the --format flags of podman and docker.

Stdlib only. `render(template, data)` parses and executes in one call; failures raise
`TemplateError` with Go's wording and the line/column where the template went wrong.
Data may be dicts (keys looked up as given), records (podpy.record), dataclasses or plain objects (attributes, with
bound methods called like Go methods), lists, and scalars.
"""

from __future__ import annotations

import enum
import json
import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, NoReturn, Optional, Tuple

from podpy.errors import PodpyError
from podpy.record import fields as record_fields
from podpy.record import is_record, record

__all__ = ["MISSING", "TemplateError", "go_str", "render", "sprintf", "to_jsonable"]


class TemplateError(PodpyError):
    """A --format template that does not parse or fails while executing."""

    def __init__(self, message: str):
        super().__init__(message, hint="check the --format template (Go text/template syntax)")


class _Missing:
    """Go's invalid reflect.Value: what a missing map key yields; prints as `<no value>`."""

    _instance: Optional[_Missing] = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


MISSING = _Missing()

# --------------------------------------------------------------------------- value rendering


def _go_float(value: float, precision: Optional[int] = None) -> str:
    """Format a float like Go's %v/%g: shortest round-trip digits, exponent form when exp<-4 or >=6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if precision is not None:
        return f"{value:.{precision}g}"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    # repr() gives the shortest round-trip digits, as Go's strconv does.
    mantissa_text, _, exponent_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa_text.partition(".")
    all_digits = int_part + frac_part
    digits = all_digits.lstrip("0")
    # Position of the decimal point relative to the first significant digit.
    decimal_point = int(exponent_text or 0) + len(int_part) - (len(all_digits) - len(digits))
    digits = digits.rstrip("0")
    exp = decimal_point - 1
    prefix = "-" if value < 0 else ""
    # strconv's shortest %g switches to exponent form outside 1e-4 <= |v| < 1e6 (as fmt's %v).
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if decimal_point <= 0:
        return prefix + "0." + "0" * -decimal_point + digits
    if decimal_point >= len(digits):
        return prefix + digits + "0" * (decimal_point - len(digits))
    return prefix + digits[:decimal_point] + "." + digits[decimal_point:]


def go_str(value: Any) -> str:
    """Render a value the way Go's fmt.Sprint (%v) would: `true`, `[a b]`, `map[k:v]`, `<nil>`."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, enum.Enum):
        return go_str(value.value)
    if isinstance(value, (bytes, bytearray)):
        return "[" + " ".join(str(b) for b in value) + "]"
    if isinstance(value, Mapping):
        items = _sorted_items(value)
        return "map[" + " ".join(go_str(k) + ":" + go_str(v) for k, v in items) + "]"
    if isinstance(value, (list, tuple, set, frozenset)):
        elements = sorted(value, key=_sort_key) if isinstance(value, (set, frozenset)) else value
        return "[" + " ".join(go_str(e) for e in elements) + "]"
    names = _struct_fields(value)
    if names is not None:
        return "{" + " ".join(go_str(getattr(value, name)) for name in names) + "}"
    return str(value)


def _struct_fields(value: Any) -> Optional[List[str]]:
    """Field names of a record or dataclass instance (rendered as a Go struct), else None."""
    if isinstance(value, type):
        return None
    if is_record(value):
        return [f.name for f in record_fields(value)]
    if hasattr(type(value), "__dataclass_fields__"):
        # A caller's own dataclass: dataclasses is loaded already if such an object exists.
        import dataclasses

        return [f.name for f in dataclasses.fields(value)]
    return None


def _sort_key(value: Any) -> Tuple[int, Any]:
    # Go sorts map keys by value within one kind; mixed kinds cannot occur in Go, so group them.
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, go_str(value))


def _sorted_items(mapping: Mapping[Any, Any]) -> List[Tuple[Any, Any]]:
    return sorted(mapping.items(), key=lambda kv: _sort_key(kv[0]))


def to_jsonable(value: Any) -> Any:
    """Convert records, dataclasses, objects, enums, tuples and datetimes into plain JSON-able data."""
    if value is MISSING or value is None or isinstance(value, (str, bool, int)):
        return None if value is MISSING else value
    if isinstance(value, float):
        # Go's encoder prints integral floats without a fraction (1 not 1.0).
        if value.is_integer() and abs(value) < 1e21:
            return int(value)
        return value
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else go_str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(value, key=_sort_key)]
    if type(value).__module__ == "datetime" and hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(bytes(value)).decode("ascii")
    names = _struct_fields(value)
    if names is not None:
        return {name: to_jsonable(getattr(value, name)) for name in names}
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_jsonable(to_dict())
    if hasattr(value, "__dict__"):
        return {k: to_jsonable(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def _go_type(value: Any) -> str:
    """Go's name for the type of a Python value, for error messages and %T."""
    if value is None or value is MISSING:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[]interface {}"
    return type(value).__name__


# --------------------------------------------------------------------------- lexer

_SPACE = " \t\r\n"
_KEYWORDS = {
    "if",
    "else",
    "end",
    "range",
    "with",
    "define",
    "template",
    "block",
    "break",
    "continue",
}


@record
class _Token:
    kind: str  # text left right space field var dot ident keyword string char number bool nil | ( ) := = , eof
    value: str
    pos: int


def _is_space(ch: str) -> bool:
    return ch != "" and ch in _SPACE


def _position(src: str, pos: int) -> Tuple[int, int]:
    line = src.count("\n", 0, pos) + 1
    col = pos - (src.rfind("\n", 0, pos) + 1) + 1
    return line, col


class _Lexer:
    def __init__(self, src: str):
        self.src = src
        self.pos = 0
        self.tokens: List[_Token] = []

    def fail(self, message: str, pos: Optional[int] = None) -> NoReturn:
        line, col = _position(self.src, self.pos if pos is None else pos)
        raise TemplateError(f"template: line {line}, col {col}: {message}")

    def run(self) -> List[_Token]:
        src = self.src
        trim_next_text = False
        while self.pos < len(src):
            start = src.find("{{", self.pos)
            end = len(src) if start < 0 else start
            text = src[self.pos : end]
            if trim_next_text:
                text = text.lstrip(_SPACE)
            # "{{- " trims the text before it; "{{-3}}" is the number -3, not a trim marker.
            trims_left = start >= 0 and src[start + 2 : start + 3] == "-"
            trims_left = trims_left and _is_space(src[start + 3 : start + 4])
            if trims_left:
                text = text.rstrip(_SPACE)
            if text:
                self.tokens.append(_Token("text", text, self.pos))
            if start < 0:
                break
            self.pos = start + 2 + (2 if trims_left else 0)
            trim_next_text = self.lex_action(start)
        self.tokens.append(_Token("eof", "", len(src)))
        return self.tokens

    def at_right_delim(self) -> Tuple[bool, bool]:
        src, pos = self.src, self.pos
        if pos + 1 < len(src) and src[pos] in _SPACE and src.startswith("-}}", pos + 1):
            return True, True
        return src.startswith("}}", pos), False

    def lex_action(self, start: int) -> bool:
        """Tokenize one action; return whether it ends with a right trim marker."""
        src = self.src
        if src.startswith("/*", self.pos):
            close = src.find("*/", self.pos + 2)
            if close < 0:
                self.fail("unclosed comment", start)
            self.pos = close + 2
            at_delim, trims = self.at_right_delim()
            if not at_delim:
                self.fail("comment ends before closing delimiter", start)
            self.pos += 4 if trims else 2
            return trims
        self.tokens.append(_Token("left", "{{", start))
        paren_depth = 0
        while True:
            at_delim, trims = self.at_right_delim()
            if at_delim:
                if paren_depth:
                    self.fail("unclosed left paren")
                self.tokens.append(_Token("right", "}}", self.pos))
                self.pos += 4 if trims else 2
                return trims
            if self.pos >= len(src):
                self.fail("unclosed action", start)
            ch = src[self.pos]
            begin = self.pos
            if ch in _SPACE:
                while self.pos < len(src) and src[self.pos] in _SPACE:
                    if self.at_right_delim()[1]:
                        break
                    self.pos += 1
                self.tokens.append(_Token("space", src[begin : self.pos], begin))
            elif ch == ":":
                if not src.startswith(":=", self.pos):
                    self.fail("expected :=")
                self.pos += 2
                self.tokens.append(_Token(":=", ":=", begin))
            elif ch in "|=,":
                self.pos += 1
                self.tokens.append(_Token(ch, ch, begin))
            elif ch == "(":
                paren_depth += 1
                self.pos += 1
                self.tokens.append(_Token("(", ch, begin))
            elif ch == ")":
                paren_depth -= 1
                if paren_depth < 0:
                    self.fail("unexpected right paren")
                self.pos += 1
                self.tokens.append(_Token(")", ch, begin))
            elif ch == '"':
                self.lex_quoted('"', "unterminated quoted string", "string")
            elif ch == "'":
                self.lex_quoted("'", "unterminated character constant", "char")
            elif ch == "`":
                close = src.find("`", self.pos + 1)
                if close < 0:
                    self.fail("unterminated raw quoted string")
                self.pos = close + 1
                self.tokens.append(_Token("rawstring", src[begin + 1 : close], begin))
            elif ch == "$":
                self.pos += 1
                self.scan_word()
                self.tokens.append(_Token("var", src[begin : self.pos], begin))
            elif ch == "." and self.pos + 1 < len(src) and src[self.pos + 1].isdigit():
                self.lex_number()
            elif ch == ".":
                self.pos += 1
                if self.scan_word():
                    self.tokens.append(_Token("field", src[begin + 1 : self.pos], begin))
                else:
                    self.tokens.append(_Token("dot", ".", begin))
            elif ch.isdigit() or ch in "+-":
                self.lex_number()
            elif ch.isalpha() or ch == "_":
                self.scan_word()
                word = src[begin : self.pos]
                kind = "ident"
                if word in _KEYWORDS:
                    kind = "keyword"
                elif word in ("true", "false"):
                    kind = "bool"
                elif word == "nil":
                    kind = "nil"
                self.tokens.append(_Token(kind, word, begin))
            else:
                self.fail(f"bad character U+{ord(ch):04X} {ch!r}")

    def scan_word(self) -> bool:
        src = self.src
        begin = self.pos
        while self.pos < len(src) and (src[self.pos].isalnum() or src[self.pos] == "_"):
            self.pos += 1
        return self.pos > begin

    def lex_quoted(self, quote: str, unterminated: str, kind: str) -> None:
        src = self.src
        begin = self.pos
        self.pos += 1
        while True:
            if self.pos >= len(src) or src[self.pos] == "\n":
                self.fail(unterminated, begin)
            ch = src[self.pos]
            if ch == "\\":
                self.pos += 2
                continue
            self.pos += 1
            if ch == quote:
                break
        self.tokens.append(_Token(kind, src[begin : self.pos], begin))

    def lex_number(self) -> None:
        src = self.src
        begin = self.pos
        if src[self.pos] in "+-":
            self.pos += 1
        allowed = "0123456789abcdefABCDEFxXoObB_.pP"
        while self.pos < len(src):
            ch = src[self.pos]
            if ch in allowed or (ch in "+-" and src[self.pos - 1] in "eEpP"):
                self.pos += 1
            else:
                break
        self.tokens.append(_Token("number", src[begin : self.pos], begin))


# --------------------------------------------------------------------------- parse tree


@record
class _Node:
    pos: int
    text: str  # the node's source, shown in "executing at <...>" errors


@record
class _Text(_Node):
    pass


@record
class _Literal(_Node):
    value: Any


@record
class _DotNode(_Node):
    pass


@record
class _FieldNode(_Node):
    names: List[str]


@record
class _VariableNode(_Node):
    name: str
    names: List[str]  # fields after the variable: $x.A.B


@record
class _IdentifierNode(_Node):
    name: str


@record
class _ChainNode(_Node):
    node: _Node
    names: List[str]


@record
class _Command(_Node):
    args: List[_Node]


@record
class _Pipe(_Node):
    decl: List[str]
    is_assign: bool
    cmds: List[_Command]


@record
class _Action(_Node):
    pipe: _Pipe


@record
class _Branch(_Node):
    kind: str  # if, with, range
    pipe: _Pipe
    body: List[_Node]
    else_body: Optional[List[_Node]]


@record
class _LoopControl(_Node):
    kind: str  # break, continue


@record
class _TemplateCall(_Node):
    name: str
    pipe: Optional[_Pipe]


class _Parser:
    def __init__(self, src: str, funcs: Mapping[str, Any]):
        self.src = src
        self.funcs = funcs
        self.tokens = _Lexer(src).run()
        self.index = 0
        self.templates: Dict[str, List[_Node]] = {}
        self.vars: List[str] = ["$"]
        self.range_depth = 0

    def fail(self, message: str, pos: int) -> NoReturn:
        line, col = _position(self.src, pos)
        raise TemplateError(f"template: line {line}, col {col}: {message}")

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def next(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
        return token

    def next_non_space(self) -> _Token:
        token = self.next()
        while token.kind == "space":
            token = self.next()
        return token

    def peek_non_space(self) -> _Token:
        saved = self.index
        token = self.next_non_space()
        self.index = saved
        return token

    def expect_right(self, context: str) -> None:
        token = self.next_non_space()
        if token.kind != "right":
            self.fail(f"unexpected {self.describe(token)} in {context}", token.pos)

    def describe(self, token: _Token) -> str:
        if token.kind == "eof":
            return "EOF"
        if token.kind == "right":
            return '"}}"'
        return f'"{token.value}"' if token.kind not in ("string", "rawstring") else token.value

    def parse(self) -> List[_Node]:
        return self.item_list(top_level=True)[0]

    def item_list(self, top_level: bool = False) -> Tuple[List[_Node], _Token]:
        """Parse until {{end}}/{{else}} (returned as the stop token) or EOF at top level."""
        nodes: List[_Node] = []
        while True:
            token = self.next()
            if token.kind == "eof":
                if top_level:
                    return nodes, token
                self.fail("unexpected EOF", token.pos)
            if token.kind == "text":
                nodes.append(_Text(token.pos, token.value))
                continue
            # token.kind == "left"
            keyword = self.peek_non_space()
            if keyword.kind == "keyword" and keyword.value in ("end", "else"):
                self.next_non_space()
                if top_level:
                    self.fail(f"unexpected {{{{{keyword.value}}}}}", keyword.pos)
                return nodes, keyword
            node = self.action(token)
            if node is not None:
                nodes.append(node)

    def action(self, left: _Token) -> Optional[_Node]:
        token = self.peek_non_space()
        if token.kind == "keyword":
            self.next_non_space()
            if token.value in ("if", "with", "range"):
                return self.branch(token.value, token.pos)
            if token.value in ("break", "continue"):
                if not self.range_depth:
                    self.fail(f"{{{{{token.value}}}}} outside {{{{range}}}}", token.pos)
                self.expect_right(token.value)
                return _LoopControl(token.pos, token.value, token.value)
            if token.value == "define":
                name = self.template_name("define")
                self.expect_right("define clause")
                saved_vars = self.vars
                self.vars = ["$"]
                body, stop = self.item_list()
                self.vars = saved_vars
                if stop.value != "end":
                    self.fail("unexpected {{else}} in define", stop.pos)
                self.expect_right("end")
                self.templates[name] = body
                return None
            if token.value in ("template", "block"):
                name = self.template_name(token.value)
                pipe = None
                if self.peek_non_space().kind != "right":
                    pipe = self.pipeline(token.value, ("right",))
                self.next_non_space()
                if token.value == "block":
                    saved_vars = self.vars
                    self.vars = ["$"]
                    body, stop = self.item_list()
                    self.vars = saved_vars
                    if stop.value != "end":
                        self.fail("unexpected {{else}} in block", stop.pos)
                    self.expect_right("end")
                    self.templates[name] = body
                return _TemplateCall(token.pos, token.value, name, pipe)
        pipe = self.pipeline("command", ("right",))
        self.next_non_space()
        return _Action(left.pos, pipe.text, pipe)

    def template_name(self, context: str) -> str:
        token = self.next_non_space()
        if token.kind not in ("string", "rawstring"):
            self.fail(f"unexpected {self.describe(token)} in {context} clause", token.pos)
        return self.unquote(token)

    def branch(self, kind: str, pos: int) -> _Branch:
        vars_mark = len(self.vars)
        pipe = self.pipeline(kind, ("right",))
        self.next_non_space()
        if kind == "range":
            self.range_depth += 1
        body, stop = self.item_list()
        if kind == "range":
            self.range_depth -= 1
        else_body: Optional[List[_Node]] = None
        if stop.value == "else":
            follow = self.peek_non_space()
            if kind in ("if", "with") and follow.kind == "keyword" and follow.value == kind:
                # {{else if x}} is sugar for {{else}}{{if x}}...{{end}}{{end}}: the nested branch
                # consumes the one {{end}}.
                self.next_non_space()
                else_body = [self.branch(kind, follow.pos)]
                del self.vars[vars_mark:]
                return _Branch(pipe.pos, pipe.text, kind, pipe, body, else_body)
            self.expect_right("else")
            else_body, stop = self.item_list()
            if stop.value != "end":
                self.fail("expected end; found {{else}}", stop.pos)
        self.expect_right("end")
        del self.vars[vars_mark:]
        return _Branch(pipe.pos, pipe.text, kind, pipe, body, else_body)

    def pipeline(self, context: str, terminators: Tuple[str, ...]) -> _Pipe:
        start = self.peek_non_space().pos
        decl: List[str] = []
        is_assign = False
        saved = self.index
        first = self.next_non_space()
        if first.kind == "var":
            after = self.next_non_space()
            if after.kind in (":=", "="):
                decl = [first.value]
                is_assign = after.kind == "="
            elif after.kind == "," and context == "range":
                second = self.next_non_space()
                op = self.next_non_space()
                if second.kind != "var" or op.kind not in (":=", "="):
                    self.fail("range can only initialize variables", after.pos)
                decl = [first.value, second.value]
                is_assign = op.kind == "="
            else:
                self.index = saved
        else:
            self.index = saved
        if is_assign:
            for name in decl:
                if name not in self.vars:
                    self.fail(f'undefined variable "{name}"', start)
        cmds: List[_Command] = []
        while True:
            token = self.peek_non_space()
            if token.kind in terminators:
                break
            if token.kind == "eof":
                self.fail("unclosed action", token.pos)
            cmds.append(self.command(terminators))
            token = self.peek_non_space()
            if token.kind == "|":
                self.next_non_space()
                continue
        end = self.peek_non_space().pos
        if not cmds:
            self.fail(f"missing value for {context}", end)
        for stage, cmd in enumerate(cmds[1:], start=2):
            if isinstance(cmd.args[0], (_Literal, _DotNode)):
                self.fail(f"non executable command in pipeline stage {stage}", cmd.pos)
        # Declarations become visible after the pipeline that defines them.
        if not is_assign:
            self.vars.extend(decl)
        return _Pipe(start, self.src[start:end].strip(), decl, is_assign, cmds)

    def command(self, terminators: Tuple[str, ...]) -> _Command:
        args: List[_Node] = []
        start = self.peek_non_space().pos
        while True:
            token = self.peek_non_space()
            if token.kind in terminators or token.kind in ("|", "eof"):
                break
            if args and self.peek().kind != "space":
                self.fail(f"unexpected {self.describe(token)} in operand", token.pos)
            self.next_non_space()
            args.append(self.operand(token))
        if not args:
            self.fail("missing value for command", start)
        end = self.peek_non_space().pos
        return _Command(start, self.src[start:end].strip(), args)

    def operand(self, token: _Token) -> _Node:
        node = self.term(token)
        names: List[str] = []
        while self.peek().kind == "field":
            names.append(self.next().value)
        if not names:
            return node
        end = self.peek().pos
        text = self.src[node.pos : end]
        if isinstance(node, _FieldNode):
            return _FieldNode(node.pos, text, node.names + names)
        if isinstance(node, _VariableNode):
            return _VariableNode(node.pos, text, node.name, node.names + names)
        if isinstance(node, (_Literal, _DotNode)):
            self.fail(f'unexpected . after term "{node.text}"', token.pos)
        return _ChainNode(node.pos, text, node, names)

    def term(self, token: _Token) -> _Node:
        kind, value, pos = token.kind, token.value, token.pos
        if kind == "ident":
            if value not in self.funcs:
                self.fail(f'function "{value}" not defined', pos)
            return _IdentifierNode(pos, value, value)
        if kind == "dot":
            return _DotNode(pos, ".")
        if kind == "nil":
            return _Literal(pos, "nil", None)
        if kind == "var":
            if value not in self.vars:
                self.fail(f'undefined variable "{value}"', pos)
            return _VariableNode(pos, value, value, [])
        if kind == "field":
            return _FieldNode(pos, "." + value, [value])
        if kind == "bool":
            return _Literal(pos, value, value == "true")
        if kind in ("string", "rawstring"):
            return _Literal(pos, self.src[pos : self.peek().pos], self.unquote(token))
        if kind == "char":
            text = self.unquote(token)
            if len(text) != 1:
                self.fail(f"malformed character constant: {value}", pos)
            return _Literal(pos, value, ord(text))
        if kind == "number":
            return _Literal(pos, value, self.number(token))
        if kind == "(":
            pipe = self.pipeline("parenthesized pipeline", (")",))
            close = self.next_non_space()
            return _ChainNode(pos, self.src[pos : close.pos + 1], pipe, [])
        self.fail(f"unexpected {self.describe(token)} in operand", pos)

    def number(self, token: _Token) -> Any:
        text = token.value.replace("_", "")
        try:
            lowered = text.lower().lstrip("+-")
            if lowered.startswith(("0x", "0o", "0b")) and "p" not in lowered:
                return int(text, 0)
            if lowered.isdigit():
                # Go reads a leading 0 as octal.
                sign = -1 if text.startswith("-") else 1
                if len(lowered) > 1 and lowered.startswith("0"):
                    return sign * int(lowered, 8)
                return sign * int(lowered)
            if lowered.startswith("0x"):
                return float.fromhex(text)
            return float(text)
        except ValueError:
            self.fail(f"bad number syntax: {token.value!r}", token.pos)

    def unquote(self, token: _Token) -> str:
        if token.kind == "rawstring":
            return token.value
        body = token.value[1:-1]
        out: List[str] = []
        i = 0
        simple = {
            "a": "\a",
            "b": "\b",
            "f": "\f",
            "n": "\n",
            "r": "\r",
            "t": "\t",
            "v": "\v",
            "\\": "\\",
            '"': '"',
            "'": "'",
        }
        while i < len(body):
            ch = body[i]
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            esc = body[i + 1] if i + 1 < len(body) else ""
            if esc in simple and not (esc == "'" and token.kind == "string"):
                out.append(simple[esc])
                i += 2
                continue
            widths = {"x": 2, "u": 4, "U": 8}
            try:
                if esc in widths:
                    digits = body[i + 2 : i + 2 + widths[esc]]
                    if len(digits) != widths[esc]:
                        raise ValueError(digits)
                    code = int(digits, 16)
                    out.append(chr(code))
                    i += 2 + widths[esc]
                    continue
                if esc in "01234567" and esc:
                    out.append(chr(int(body[i + 1 : i + 4], 8)))
                    i += 4
                    continue
            except ValueError:
                pass
            self.fail(f"invalid syntax in {token.value}", token.pos)
        return "".join(out)


# --------------------------------------------------------------------------- functions


class _ExecFailure(Exception):
    """Raised inside builtins; the executor adds the position of the failing node."""


def _as_text(value: Any) -> str:
    return "" if value is None or value is MISSING else go_str(value)


def _truth(value: Any) -> bool:
    """Go's truth: false, 0, nil, and empty strings/slices/maps are false; structs are true."""
    if value is None or value is MISSING:
        return False
    if isinstance(value, (bool, int, float, str, bytes, list, tuple, dict, set, frozenset)):
        return bool(value)
    if isinstance(value, Mapping):
        return len(value) > 0
    return True


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise _ExecFailure("missing argument for comparison")
    for other in others:
        if (first is None or first is MISSING) or (other is None or other is MISSING):
            if (first is None or first is MISSING) and (other is None or other is MISSING):
                return True
            continue
        kind_a, kind_b = _kind(first), _kind(other)
        if kind_a != kind_b and "other" not in (kind_a, kind_b):
            raise _ExecFailure("incompatible types for comparison")
        if first == other:
            return True
    return False


def _ordered(first: Any, second: Any) -> Tuple[Any, Any]:
    kind_a, kind_b = _kind(first), _kind(second)
    if kind_a in ("bool", "other") or kind_b in ("bool", "other"):
        raise _ExecFailure("invalid type for comparison")
    if kind_a != kind_b:
        raise _ExecFailure("incompatible types for comparison")
    return first, second


def _lt(a: Any, b: Any) -> bool:
    a, b = _ordered(a, b)
    return a < b


def _le(a: Any, b: Any) -> bool:
    a, b = _ordered(a, b)
    return a <= b


def _gt(a: Any, b: Any) -> bool:
    a, b = _ordered(a, b)
    return a > b


def _ge(a: Any, b: Any) -> bool:
    a, b = _ordered(a, b)
    return a >= b


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if item is None or item is MISSING:
            raise _ExecFailure("index of untyped nil")
        if isinstance(item, Mapping):
            item = item.get(key, MISSING)
        elif isinstance(item, (list, tuple, str, bytes)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise _ExecFailure(f"cannot index slice/array with type {_go_type(key)}")
            sequence = item.encode() if isinstance(item, str) else item
            if not 0 <= key < len(sequence):
                raise _ExecFailure(f"index out of range: {key}")
            item = sequence[key]
        else:
            raise _ExecFailure(f"can't index item of type {_go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if not isinstance(item, (str, list, tuple)):
        raise _ExecFailure(f"can't slice item of type {_go_type(item)}")
    if len(indexes) > 3 or (len(indexes) == 3 and isinstance(item, str)):
        raise _ExecFailure(f"too many slice indexes: {len(indexes)}")
    bounds = [0, len(item)] + ([len(item)] if len(indexes) == 3 else [])
    for position, value in enumerate(indexes):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _ExecFailure(f"cannot index slice/array with type {_go_type(value)}")
        bounds[position] = value
    if not 0 <= bounds[0] <= bounds[1] <= len(item):
        raise _ExecFailure(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    return item[bounds[0] : bounds[1]]


def _len(item: Any) -> int:
    if isinstance(item, str):
        return len(item.encode())  # Go counts bytes
    if isinstance(item, (list, tuple, bytes, set, frozenset)) or isinstance(item, Mapping):
        return len(item)
    raise _ExecFailure(f"len of type {_go_type(item)}")


def _sprint(*args: Any) -> str:
    """fmt.Sprint: a space between operands when neither side is a string."""
    out: List[str] = []
    for position, arg in enumerate(args):
        if position and not isinstance(arg, str) and not isinstance(args[position - 1], str):
            out.append(" ")
        out.append(go_str(arg))
    return "".join(out)


def _sprintln(*args: Any) -> str:
    return " ".join(go_str(a) for a in args) + "\n"


def _escaper_arg(args: Tuple[Any, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return _sprint(*args)


def _html(*args: Any) -> str:
    text = _escaper_arg(args)
    replacements = {
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
        "'": "&#39;",
        '"': "&#34;",
        "\0": "\ufffd",
    }
    return "".join(replacements.get(ch, ch) for ch in text)


def _js(*args: Any) -> str:
    text = _escaper_arg(args)
    out: List[str] = []
    for ch in text:
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch in "<>&=":
            out.append(f"\\u{ord(ch):04X}")
        elif ord(ch) < 0x20 or not ch.isprintable():
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_escaper_arg(args), safe="")


def _json(value: Any) -> str:
    """podman/docker `json`: compact like Go's json.Marshal, HTML characters left as is."""
    return json.dumps(to_jsonable(value), separators=(",", ":"), ensure_ascii=False)


def _title(text: Any) -> str:
    """Go's strings.Title: upper-case the first letter of each word, leave the rest alone."""
    out: List[str] = []
    previous = " "
    for ch in _as_text(text):
        at_word_start = not (previous.isalnum() or previous == "_")
        out.append(ch.upper() if at_word_start else ch)
        previous = ch
    return "".join(out)


def _split(text: Any, sep: Any) -> List[str]:
    text, sep = _as_text(text), _as_text(sep)
    if sep == "":
        return list(text)  # Go splits into UTF-8 sequences
    return text.split(sep)


def _join(items: Any, sep: Any) -> str:
    if items is None or items is MISSING:
        return ""
    if isinstance(items, str) or not isinstance(items, Iterable):
        raise _ExecFailure(f"wrong type for value; expected []string; got {_go_type(items)}")
    return _as_text(sep).join(go_str(i) for i in items)


def _truncate(text: Any, length: Any) -> str:
    text = _as_text(text)
    if not isinstance(length, int):
        raise _ExecFailure(f"wrong type for value; expected int; got {_go_type(length)}")
    return text[:length] if len(text) > length else text


def _pad(text: Any, prefix: Any, suffix: Any) -> str:
    text = _as_text(text)
    if not text:
        return text
    if not isinstance(prefix, int) or not isinstance(suffix, int):
        raise _ExecFailure("wrong type for value; expected int")
    if max(prefix, suffix) > _MAX_WIDTH:
        raise _ExecFailure(f"padding larger than {_MAX_WIDTH}")
    return " " * prefix + text + " " * suffix


def _replace(text: Any, old: Any, new: Any) -> str:
    return _as_text(text).replace(_as_text(old), _as_text(new))


def _call(fn: Any, *args: Any) -> Any:
    if not callable(fn):
        raise _ExecFailure(f"non-function of type {_go_type(fn)}")
    return fn(*args)


def _not(value: Any) -> bool:
    return not _truth(value)


# name -> (callable, minimum args, maximum args or None for variadic)
_FUNCS: Dict[str, Tuple[Callable[..., Any], int, Optional[int]]] = {
    "and": (lambda *a: a[-1], 1, None),  # evaluated lazily by the executor
    "or": (lambda *a: a[-1], 1, None),
    "not": (_not, 1, 1),
    "len": (_len, 1, 1),
    "index": (_index, 1, None),
    "slice": (_slice, 1, None),
    "print": (_sprint, 0, None),
    "println": (_sprintln, 0, None),
    "printf": (lambda fmt, *a: sprintf(_as_text(fmt), *a), 1, None),
    "eq": (_eq, 1, None),
    "ne": (lambda a, b: not _eq(a, b), 2, 2),
    "lt": (_lt, 2, 2),
    "le": (_le, 2, 2),
    "gt": (_gt, 2, 2),
    "ge": (_ge, 2, 2),
    "html": (_html, 0, None),
    "js": (_js, 0, None),
    "urlquery": (_urlquery, 0, None),
    "call": (_call, 1, None),
    "json": (_json, 1, 1),
    "upper": (lambda s: _as_text(s).upper(), 1, 1),
    "lower": (lambda s: _as_text(s).lower(), 1, 1),
    "title": (_title, 1, 1),
    "split": (_split, 2, 2),
    "join": (_join, 2, 2),
    "truncate": (_truncate, 2, 2),
    "pad": (_pad, 3, 3),
    "replace": (_replace, 3, 3),
}


# --------------------------------------------------------------------------- printf


def _go_quote(text: str) -> str:
    """strconv.Quote: a double-quoted Go string literal."""
    escapes = {
        "\a": "\\a",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\v": "\\v",
        "\\": "\\\\",
        '"': '\\"',
    }
    out: List[str] = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _bad_verb(verb: str, arg: Any) -> str:
    if arg is None or arg is MISSING:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({_go_type(arg)}={go_str(arg)})"


def _pad_field(text: str, flags: str, width: Optional[int], numeric: bool) -> str:
    if width is None or len(text) >= width:
        return text
    if "-" in flags:
        return text + " " * (width - len(text))
    if "0" in flags and numeric:
        sign = text[0] if text[:1] in "+-" else ""
        return sign + "0" * (width - len(text)) + text[len(sign) :]
    return " " * (width - len(text)) + text


def _format_integer(value: int, verb: str, flags: str, precision: Optional[int]) -> str:
    base_formats = {"d": "d", "x": "x", "X": "X", "o": "o", "O": "o", "b": "b"}
    digits = format(abs(value), base_formats[verb])
    if precision is not None and len(digits) < precision:
        digits = "0" * (precision - len(digits)) + digits
    prefix = ""
    if verb == "O" or ("#" in flags and verb == "o"):
        prefix = "0o" if verb == "O" else "0"
    elif "#" in flags and verb in "xX":
        prefix = "0" + verb
    elif "#" in flags and verb == "b":
        prefix = "0b"
    sign = "-" if value < 0 else ("+" if "+" in flags else (" " if " " in flags else ""))
    return sign + prefix + digits


def _format_one(
    verb: str, flags: str, width: Optional[int], precision: Optional[int], arg: Any
) -> str:
    numeric = False
    if verb == "v":
        if isinstance(arg, float):
            text, numeric = _go_float(arg), True
        elif "#" in flags and isinstance(arg, str):
            text = _go_quote(arg)
        else:
            text = go_str(arg)
    elif verb == "T":
        text = _go_type(arg)
    elif verb == "t":
        if not isinstance(arg, bool):
            return _bad_verb(verb, arg)
        text = go_str(arg)
    elif verb in "dxXoObcqU" and isinstance(arg, int) and not isinstance(arg, bool):
        numeric = verb != "c"
        if verb == "c":
            text = chr(arg)
        elif verb == "q":
            text = "'" + _go_quote(chr(arg))[1:-1].replace("'", "\\'").replace('\\"', '"') + "'"
        elif verb == "U":
            text = f"U+{arg:04X}"
        else:
            text = _format_integer(arg, verb, flags, precision)
    elif verb in "sqxX" and isinstance(arg, str):
        if precision is not None:
            arg = arg[:precision]
        if verb == "s":
            text = arg
        elif verb == "q":
            text = "`" + arg + "`" if "#" in flags and "`" not in arg else _go_quote(arg)
        else:
            text = arg.encode().hex()
            text = text.upper() if verb == "X" else text
    elif verb == "s" and isinstance(arg, (list, tuple, Mapping)) and not isinstance(arg, str):
        text = go_str(arg)
    elif verb in "eEfFgG" and isinstance(arg, (int, float)) and not isinstance(arg, bool):
        numeric = True
        value = float(arg)
        if verb in "gG" and precision is None:
            text = _go_float(value)
            text = text.upper() if verb == "G" else text
        else:
            text = f"%.*{verb}" % (6 if precision is None else precision, value)
        if "+" in flags and not text.startswith("-"):
            text = "+" + text
    elif verb == "v" or (
        verb == "s" and not isinstance(arg, (bool, int, float, type(None), _Missing))
    ):
        text = go_str(arg)
    else:
        return _bad_verb(verb, arg)
    return _pad_field(text, flags, width, numeric)


_MAX_WIDTH = 1_000_000  # Go's fmt rejects larger widths and precisions (tooLarge)


def _star_argument(args: Tuple[Any, ...], index: int) -> Optional[int]:
    """The int a `*` width or precision takes from the arguments, or None when unusable."""
    if index >= len(args):
        return None
    value = args[index]
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) > _MAX_WIDTH:
        return None
    return value


def sprintf(fmt: str, *args: Any) -> str:
    """Go's fmt.Sprintf for the verbs templates use: %s %d %v %q %f %e %g %x %X %o %b %c %t %T %%."""
    out: List[str] = []
    arg_index = 0
    i = 0
    n = len(fmt)
    while i < n:
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        i += 1
        flags = ""
        while i < n and fmt[i] in "-+# 0":
            flags += fmt[i]
            i += 1
        if i < n and fmt[i] == "[":
            close = fmt.find("]", i)
            if close > i and fmt[i + 1 : close].isdigit():
                arg_index = int(fmt[i + 1 : close]) - 1
                i = close + 1
        width: Optional[int] = None
        if i < n and fmt[i] == "*":
            i += 1
            width = _star_argument(args, arg_index)
            arg_index += 1
            if width is None:
                out.append("%!(BADWIDTH)")
            elif width < 0:
                flags, width = flags + "-", -width
        else:
            start = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > start:
                width = int(fmt[start:i])
                if width > _MAX_WIDTH:
                    out.append("%!(BADWIDTH)")
                    width = None
        precision: Optional[int] = None
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                precision = _star_argument(args, arg_index)
                arg_index += 1
                if precision is None or precision < 0:
                    out.append("%!(BADPREC)")
                    precision = None
            else:
                start = i
                while i < n and fmt[i].isdigit():
                    i += 1
                precision = int(fmt[start:i]) if i > start else 0
                if precision > _MAX_WIDTH:
                    out.append("%!(BADPREC)")
                    precision = None
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if arg_index >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_format_one(verb, flags, width, precision, args[arg_index]))
        arg_index += 1
    if arg_index < len(args):
        extra = ", ".join(f"{_go_type(a)}={go_str(a)}" for a in args[arg_index:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# --------------------------------------------------------------------------- executor


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_NO_FINAL = object()  # no value piped in from the previous pipeline stage
_MAX_DEPTH = 100  # Go allows 100000; Python frames run out long before that
_BASIC = (str, int, float, bool, bytes, list, tuple, set, frozenset)


class _Executor:
    def __init__(self, src: str, templates: Dict[str, List[_Node]], data: Any):
        self.src = src
        self.templates = templates
        self.vars: List[Tuple[str, Any]] = [("$", data)]
        self.out: List[str] = []
        self.depth = 0

    def fail(self, node: _Node, message: str) -> NoReturn:
        line, col = _position(self.src, node.pos)
        raise TemplateError(
            f"template: line {line}, col {col}: executing at <{node.text}>: {message}"
        )

    def walk(self, dot: Any, nodes: List[_Node]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.out.append(go_str(value))
            elif isinstance(node, _Branch):
                self.branch(dot, node)
            elif isinstance(node, _LoopControl):
                raise _Break() if node.kind == "break" else _Continue()
            elif isinstance(node, _TemplateCall):
                self.call_template(dot, node)

    def call_template(self, dot: Any, node: _TemplateCall) -> None:
        body = self.templates.get(node.name)
        if body is None:
            self.fail(node, f'template "{node.name}" not defined')
        value = self.pipeline(dot, node.pipe) if node.pipe is not None else None
        if self.depth >= _MAX_DEPTH:
            self.fail(node, f"exceeded maximum template depth ({_MAX_DEPTH})")
        saved_vars = self.vars
        self.vars = [("$", value)]
        self.depth += 1
        try:
            self.walk(value, body)
        finally:
            self.depth -= 1
            self.vars = saved_vars

    def branch(self, dot: Any, node: _Branch) -> None:
        mark = len(self.vars)
        try:
            value = self.pipeline(dot, node.pipe, declare=node.kind != "range")
            if node.kind == "range":
                self.range(dot, node, value)
            elif _truth(value):
                self.walk(value if node.kind == "with" else dot, node.body)
            elif node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def range(self, dot: Any, node: _Branch, value: Any) -> None:
        items: Iterable[Tuple[Any, Any]]
        if value is None or value is MISSING:
            items = []
        elif isinstance(value, Mapping):
            items = _sorted_items(value)
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            if len(node.pipe.decl) > 1:
                self.fail(node, "can't use range over integer with two variables")
            items = zip(range(value), range(value))  # lazy: `range 1000000` must not build a list
        elif isinstance(value, (set, frozenset)):
            items = list(enumerate(sorted(value, key=_sort_key)))
        elif isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            self.fail(node, f"range can't iterate over {go_str(value)}")
        else:
            items = list(enumerate(value))
        mark = len(self.vars)
        iterated = False
        for key, element in items:
            iterated = True
            decl = node.pipe.decl
            if len(decl) == 1:
                self.set_var(decl[0], element, node.pipe.is_assign)
            elif len(decl) == 2:
                self.set_var(decl[0], key, node.pipe.is_assign)
                self.set_var(decl[1], element, node.pipe.is_assign)
            try:
                self.walk(element, node.body)
            except _Break:
                break
            except _Continue:
                pass
            finally:
                del self.vars[mark:]
        if not iterated and node.else_body is not None:
            self.walk(dot, node.else_body)

    def set_var(self, name: str, value: Any, is_assign: bool) -> None:
        if is_assign:
            for position in range(len(self.vars) - 1, -1, -1):
                if self.vars[position][0] == name:
                    self.vars[position] = (name, value)
                    return
        self.vars.append((name, value))

    def lookup_var(self, node: _Node, name: str) -> Any:
        for var_name, value in reversed(self.vars):
            if var_name == name:
                return value
        self.fail(node, f'undefined variable "{name}"')

    def pipeline(self, dot: Any, pipe: _Pipe, declare: bool = True) -> Any:
        value: Any = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        if declare and pipe.decl:
            self.set_var(pipe.decl[0], value, pipe.is_assign)
        return value

    def command(self, dot: Any, cmd: _Command, final: Any) -> Any:
        first = cmd.args[0]
        args = cmd.args[1:]
        if isinstance(first, _FieldNode):
            return self.field_chain(dot, dot, first, first.names, args, final)
        if isinstance(first, _VariableNode):
            value = self.lookup_var(first, first.name)
            if first.names:
                return self.field_chain(dot, value, first, first.names, args, final)
            self.no_arguments(first, args, final)
            return value
        if isinstance(first, _ChainNode):
            if not first.names:
                self.no_arguments(first, args, final)
            receiver = self.eval_arg(dot, first.node)
            if not first.names:
                return receiver
            return self.field_chain(dot, receiver, first, first.names, args, final)
        if isinstance(first, _IdentifierNode):
            return self.function(dot, first, args, final, cmd)
        self.no_arguments(first, args, final)
        return self.eval_arg(dot, first)

    def no_arguments(self, node: _Node, args: List[_Node], final: Any) -> None:
        if args or final is not _NO_FINAL:
            self.fail(node, f"can't give argument to non-function {node.text}")

    def eval_arg(self, dot: Any, node: _Node) -> Any:
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _DotNode):
            return dot
        if isinstance(node, _FieldNode):
            return self.field_chain(dot, dot, node, node.names, [], _NO_FINAL)
        if isinstance(node, _VariableNode):
            value = self.lookup_var(node, node.name)
            if node.names:
                return self.field_chain(dot, value, node, node.names, [], _NO_FINAL)
            return value
        if isinstance(node, _Pipe):
            mark = len(self.vars)
            try:
                return self.pipeline(dot, node)
            finally:
                del self.vars[mark:]
        if isinstance(node, _ChainNode):
            receiver = self.eval_arg(dot, node.node)
            if node.names:
                return self.field_chain(dot, receiver, node, node.names, [], _NO_FINAL)
            return receiver
        if isinstance(node, _IdentifierNode):
            return self.function(dot, node, [], _NO_FINAL)
        self.fail(node, "can't evaluate")

    def field_chain(
        self, dot: Any, receiver: Any, node: _Node, names: List[str], args: List[_Node], final: Any
    ) -> Any:
        for name in names[:-1]:
            receiver = self.field(dot, receiver, node, name, [], _NO_FINAL)
        return self.field(dot, receiver, node, names[-1], args, final)

    def field(
        self, dot: Any, receiver: Any, node: _Node, name: str, args: List[_Node], final: Any
    ) -> Any:
        has_args = bool(args) or final is not _NO_FINAL
        if receiver is None or receiver is MISSING:
            # Go returns the zero value for a field of a missing map entry; nil pointers are
            # treated the same way so `{{.State.Health.Status}}` prints <no value>, not a crash.
            return MISSING
        if isinstance(receiver, Mapping):
            if has_args:
                self.fail(node, f"{name} is not a method but has arguments")
            return receiver.get(name, MISSING)
        if isinstance(receiver, _BASIC) or name.startswith("_"):
            self.fail(node, f"can't evaluate field {name} in type {_go_type(receiver)}")
        try:
            value = getattr(receiver, name)
        except AttributeError:
            self.fail(node, f"can't evaluate field {name} in type {_go_type(receiver)}")
        if callable(value) and not isinstance(value, type):
            call_args = [self.eval_arg(dot, a) for a in args]
            if final is not _NO_FINAL:
                call_args.append(final)
            try:
                return value(*call_args)
            except TypeError as err:
                self.fail(node, f"error calling {name}: {err}")
        if has_args:
            self.fail(node, f"{name} has arguments but cannot be invoked as function")
        return value

    def function(
        self,
        dot: Any,
        node: _IdentifierNode,
        args: List[_Node],
        final: Any,
        cmd: Optional[_Command] = None,
    ) -> Any:
        name = node.name
        fn, minimum, maximum = _FUNCS[name]
        count = len(args) + (final is not _NO_FINAL)
        if count < minimum or (maximum is not None and count > maximum):
            want = minimum if maximum == minimum else f"at least {minimum}"
            self.fail(node, f"wrong number of args for {name}: want {want} got {count}")
        if name in ("and", "or"):
            # Short-circuit like Go 1.18+: stop at the first value that decides the result.
            value: Any = None
            for position in range(count):
                value = final if position == len(args) else self.eval_arg(dot, args[position])
                if _truth(value) == (name == "or"):
                    return value
            return value
        values = [self.eval_arg(dot, a) for a in args]
        if final is not _NO_FINAL:
            values.append(final)
        try:
            return fn(*values)
        except _ExecFailure as err:
            self.fail(cmd or node, f"error calling {name}: {err}")
        except (TypeError, ValueError, AttributeError, OverflowError) as err:
            self.fail(cmd or node, f"error calling {name}: {err}")


def render(template: str, data: Any) -> str:
    """Execute a Go text/template against data and return the output."""
    try:
        parser = _Parser(template, _FUNCS)
        nodes = parser.parse()
        executor = _Executor(template, parser.templates, data)
        executor.walk(data, nodes)
    except RecursionError:
        raise TemplateError("template: nested too deeply") from None
    return "".join(executor.out)
