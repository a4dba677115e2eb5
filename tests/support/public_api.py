"""A static check that code uses Google's client libraries and gRPC through their public
surfaces only (tests/unit/test_public_api.py runs it on reel_reconciler/).

It parses a module and reports an import of a private module or name (`_x`) from google,
grpc or proto (proto-plus), and a private attribute read or written on a value that comes from
them, or whose origin it cannot tell: an `Any` parameter may well be a Google object, so
private attributes are for `self`, `cls` and objects of our own classes. What a name holds is
followed in source order through imports, annotations, assignments, loops and `self.x`.
"""

from __future__ import annotations

import ast
import builtins

FOREIGN_ROOTS = {"google", "grpc", "proto"}  # proto: proto-plus, the GAPIC types' base
OURS_ROOTS = {"reel_reconciler"}
PUBLIC_UNDERSCORED = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}
"""namedtuple's documented API."""
OTHER, OURS, UNKNOWN, FOREIGN = range(4)
"""What a value is known to be, in increasing order of suspicion."""


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class _Checker:
    """One module: binds names to what they hold, in source order, and reports violations."""

    def __init__(self, source: str, filename: str) -> None:
        self.tree = ast.parse(source)
        self.filename = filename
        self.found: list[str] = []
        self.module: dict[str, int] = {}
        self.self_attrs: dict[str, int] = {}

    def report(self, node: ast.AST, what: str) -> None:
        self.found.append(f"{self.filename}:{getattr(node, 'lineno', 0)}: {what}")

    def run(self) -> list[str]:
        self.block(self.tree.body, [self.module], check=False)  # every module-level name
        self.block(self.tree.body, [self.module], check=True)
        return self.found

    # What names and expressions hold

    def lookup(self, name: str, scopes: list[dict[str, int]]) -> int:
        if name in ("Any", "object"):  # an annotation that says nothing
            return UNKNOWN
        for scope in reversed(scopes):
            if name in scope:
                return scope[name]
        return OTHER if hasattr(builtins, name) else UNKNOWN

    def kind(self, node: ast.AST | None, scopes: list[dict[str, int]]) -> int:
        if node is None:
            return UNKNOWN
        if isinstance(node, ast.Name):
            return self.lookup(node.id, scopes)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                return self.self_attrs.get(node.attr, OURS)
            return self.kind(node.value, scopes)
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "type" and node.args:
                return self.kind(node.args[0], scopes)
            parts = [node.func, *node.args, *(k.value for k in node.keywords)]
            return max(self.kind(part, scopes) for part in parts)
        return self.value_kind(node, scopes)

    def value_kind(self, node: ast.AST, scopes: list[dict[str, int]]) -> int:
        """What an expression that is not a name, attribute or call holds."""
        if isinstance(node, ast.Subscript | ast.Starred | ast.Await | ast.NamedExpr):
            return self.kind(node.value, scopes)
        if isinstance(node, ast.BinOp):
            return max(self.kind(node.left, scopes), self.kind(node.right, scopes))
        if isinstance(node, ast.BoolOp):
            return max(self.kind(value, scopes) for value in node.values)
        if isinstance(node, ast.IfExp):
            return max(self.kind(node.body, scopes), self.kind(node.orelse, scopes))
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):  # a quoted annotation
                try:
                    return self.kind(ast.parse(node.value, mode="eval").body, scopes)
                except SyntaxError:
                    return OTHER
            return OTHER
        if isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict | ast.JoinedStr
                      | ast.Compare | ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp
                      | ast.GeneratorExp | ast.UnaryOp):
            return OTHER
        return UNKNOWN

    def bind(self, target: ast.AST, kind: int, scopes: list[dict[str, int]]) -> None:
        if isinstance(target, ast.Name):
            scopes[-1][target.id] = kind
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self.bind(element, kind, scopes)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, kind, scopes)
        elif (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
              and target.value.id == "self"):
            self.self_attrs[target.attr] = max(kind, self.self_attrs.get(target.attr, OTHER))

    # Statements, in order

    def block(self, body: list[ast.stmt], scopes: list[dict[str, int]], check: bool) -> None:
        for statement in body:
            self.statement(statement, scopes, check)

    def statement(self, node: ast.stmt, scopes: list[dict[str, int]], check: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            self.imported(node, scopes, check)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            scopes[-1][node.name] = OURS
            if check or len(scopes) > 1:
                self.function(node, scopes, check)
        elif isinstance(node, ast.ClassDef):
            scopes[-1][node.name] = OURS
            if check:
                self.klass(node, scopes)
        else:
            self.bind_statement(node, scopes)
            if check:
                self.attributes(node, scopes)
            self.nested(node, scopes, check)

    def bind_statement(self, node: ast.stmt, scopes: list[dict[str, int]]) -> None:
        """The names a simple or compound statement binds, before its body is read."""
        self.bind_inner(node, scopes)
        if isinstance(node, ast.Assign):
            for target in node.targets:
                self.bind(target, self.kind(node.value, scopes), scopes)
        elif isinstance(node, ast.AnnAssign):
            self.bind(node.target, max(self.kind(node.annotation, scopes),
                                       self.kind(node.value, scopes) if node.value else OTHER),
                      scopes)
        elif isinstance(node, ast.For | ast.AsyncFor):
            self.bind(node.target, self.kind(node.iter, scopes), scopes)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if item.optional_vars is not None:
                    self.bind(item.optional_vars, self.kind(item.context_expr, scopes), scopes)

    def bind_inner(self, node: ast.stmt, scopes: list[dict[str, int]]) -> None:
        """Comprehension, walrus and lambda names inside a statement, before their use."""
        for child in ast.walk(node):
            if isinstance(child, ast.comprehension):
                self.bind(child.target, self.kind(child.iter, scopes), scopes)
            elif isinstance(child, ast.NamedExpr):
                self.bind(child.target, self.kind(child.value, scopes), scopes)
            elif isinstance(child, ast.Lambda):
                for arg in child.args.args:
                    scopes[-1].setdefault(arg.arg, UNKNOWN)

    def nested(self, node: ast.stmt, scopes: list[dict[str, int]], check: bool) -> None:
        """The blocks of a compound statement: bodies, handlers, match cases."""
        for field in ("body", "orelse", "finalbody"):
            self.block(getattr(node, field, []), scopes, check)
        for handler in getattr(node, "handlers", []):
            if handler.name:
                scopes[-1][handler.name] = self.kind(handler.type, scopes)
            self.block(handler.body, scopes, check)
        for case in getattr(node, "cases", []):
            self.block(case.body, scopes, check)

    def imported(self, node: ast.Import | ast.ImportFrom, scopes: list[dict[str, int]],
                 check: bool) -> None:
        modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                   else [node.module or ""])
        for module in modules:
            parts = module.split(".")
            if check and parts[0] in FOREIGN_ROOTS and any(map(_private, parts)):
                self.report(node, f"import of a private module: {module}")
        for alias in node.names:
            if isinstance(node, ast.Import):
                root = alias.name.split(".")[0]
                name = alias.asname or root
            else:
                root = "reel_reconciler" if node.level else (node.module or "").split(".")[0]
                name = alias.asname or alias.name
                if check and root in FOREIGN_ROOTS and _private(alias.name):
                    self.report(node, f"import of a private name: {node.module}.{alias.name}")
            scopes[-1][name] = (FOREIGN if root in FOREIGN_ROOTS
                                else OURS if root in OURS_ROOTS else OTHER)

    def function(self, node: ast.FunctionDef | ast.AsyncFunctionDef,
                 scopes: list[dict[str, int]], check: bool, method: bool = False) -> None:
        local: dict[str, int] = {}
        args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                *(a for a in (node.args.vararg, node.args.kwarg) if a is not None)]
        for number, arg in enumerate(args):
            if method and number == 0:
                local[arg.arg] = OURS  # self or cls
            else:
                local[arg.arg] = self.kind(arg.annotation, scopes)
        if check:
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None:
                    self.attributes(default, scopes)
        self.block(node.body, [*scopes, local], check)

    def klass(self, node: ast.ClassDef, scopes: list[dict[str, int]]) -> None:
        """Two passes: what `self.x` holds is known before any method reads it."""
        outer, self.self_attrs = self.self_attrs, {}
        for statement in node.body:
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                self.self_attrs[statement.target.id] = self.kind(statement.annotation, scopes)
        for check in (False, True):
            for statement in node.body:
                if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                    static = any(isinstance(d, ast.Name) and d.id == "staticmethod"
                                 for d in statement.decorator_list)
                    self.function(statement, scopes, check, method=not static)
                elif check:
                    self.statement(statement, [*scopes, {}], check)
        self.self_attrs = outer

    # The check itself

    def attributes(self, node: ast.AST, scopes: list[dict[str, int]]) -> None:
        """Private attributes in `node`, nested functions and classes left to their turn."""
        pending = [node] if not isinstance(node, ast.stmt) else [
            child for name, child in ast.iter_fields(node)
            if name not in ("body", "orelse", "finalbody", "handlers", "cases")
            for child in (child if isinstance(child, list) else [child])
            if isinstance(child, ast.AST)]
        while pending:
            child = pending.pop()
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            pending.extend(ast.iter_child_nodes(child))
            receiver, attr = None, None
            if isinstance(child, ast.Attribute):
                receiver, attr = child.value, child.attr
            elif (isinstance(child, ast.Call) and isinstance(child.func, ast.Name)
                  and child.func.id in ("getattr", "setattr", "hasattr", "delattr")
                  and len(child.args) >= 2 and isinstance(child.args[1], ast.Constant)
                  and isinstance(child.args[1].value, str)):
                receiver, attr = child.args[0], child.args[1].value
            if receiver is None or attr is None or not _private(attr):
                continue
            if attr in PUBLIC_UNDERSCORED or self._own(receiver):
                continue
            kind = self.kind(receiver, scopes)
            if kind in (FOREIGN, UNKNOWN):
                origin = "a Google/gRPC value" if kind == FOREIGN else "a value of unknown origin"
                self.report(child, f"private attribute .{attr} of {origin}: "
                                   f"{ast.unparse(receiver)}")

    @staticmethod
    def _own(receiver: ast.expr) -> bool:
        if isinstance(receiver, ast.Name):
            return receiver.id in ("self", "cls")
        return (isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Name)
                and receiver.func.id == "super")


def violations(source: str, filename: str = "<source>") -> list[str]:
    return _Checker(source, filename).run()
