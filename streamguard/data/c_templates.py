"""C function templates of the synthetic demo dataset: the weakness families, noise and decoys.

``function(rng, family, vuln)`` draws one C function of ``family`` (a key of
:data:`FAMILIES`, each mapped to its CWE and its template), vulnerable or fixed.
Each family is one weakness (CWE) with a vulnerable and a fixed variant that
use the same APIs; the difference is local and consistent inside the family
(a guard present or absent right before the sink, a bound of ``<`` vs ``<=``,
``sizeof(buf)`` vs a caller length, the order of ``free`` and a use …).
Identifiers, types, buffer sizes, brace style and unrelated *noise* statements
vary. Noise is drawn from the same pool for both labels and deliberately holds
checks of the same shape as the fixes (``if (x == NULL) return -1;``,
``if (strlen(a) >= sizeof(b)) …``, ``SIZE_MAX / sizeof …``, loops with ``<=``),
so that no single token separates the classes; a model has to look at how
tokens are arranged.

``function(random.Random(s), family, vuln)`` for both values of ``vuln`` gives a
minimal pair (same identifiers, noise and layout, differing only at the fix).
The dataset itself (``generate``, ``write_demo_dataset``) is ``streamguard.data.synthetic``.
"""

from __future__ import annotations

import random
from typing import Callable

# ----------------------------------------------------------------------------- names

_MODULES = ["", "", "net_", "img_", "cfg_", "usb_", "http_", "db_", "snd_", "fs_"]
_VERBS = ["parse", "read", "copy", "load", "handle", "build", "decode", "process", "init", "format",
          "fill", "store", "update", "append", "get", "set", "scan", "emit", "check", "prepare"]
_NOUNS = ["header", "packet", "name", "path", "record", "entry", "buffer", "config", "message", "token",
          "field", "request", "frame", "chunk", "label", "user", "key", "line", "reply", "option"]
_BUFS = ["buf", "tmp", "name", "dst", "out", "line", "path", "scratch", "local", "field", "tag", "hdr", "msg", "word"]
_SRCS = ["src", "input", "data", "str", "arg", "value", "text", "payload", "raw", "s", "in", "user"]
_LENS = ["len", "n", "size", "count", "nbytes", "length", "sz", "cnt", "want", "avail"]
_PTRS = ["p", "ptr", "node", "item", "entry", "obj", "rec", "elem", "cur", "victim"]
_STRUCTS = ["node", "item", "entry", "record", "packet", "session", "conn", "block", "frame", "job"]
_FIELDS = ["len", "size", "id", "flags", "refcnt", "count", "type", "state", "offset", "mode"]
_IDX = ["i", "j", "k", "idx", "pos", "slot", "n"]
_INTS = ["rc", "ret", "err", "status", "res", "result", "total", "acc", "val", "sum"]
_SIZES = [8, 16, 32, 64, 128, 256]
_MACROS = ["MAX_ITEMS", "NSLOTS", "TABLE_SIZE", "MAX_ENTRIES", "NBUCKETS", "MAX_KEYS"]
_SINKS = ["process", "emit", "log_line", "handle_value", "store_name", "send_reply", "consume", "dispatch"]


class _Names:
    """Draws identifiers without clashes inside one function."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def pick(self, pool: list[str]) -> str:
        free = [x for x in pool if x not in self.used]
        name = self.rng.choice(free) if free else f"{self.rng.choice(pool)}{len(self.used)}"
        self.used.add(name)
        return name


class _Fn:
    """A function under construction: parameters, declarations, core statements, return."""

    def __init__(self, rng: random.Random, ret_type: str = "int", err: str = "-1", ok: str = "0"):
        self.rng = rng
        self.nm = _Names(rng)
        self.ret_type = ret_type
        self.err = err  # value returned on an error path
        self.ok = ok  # final return expression
        self.params: list[str] = []
        self.decls: list[str] = []
        self.core: list[str] = []
        self.pre: list[str] = []  # noise before the core
        self.post: list[str] = []  # noise after the core
        # layout drawn up front, so the vulnerable and fixed variant of one seed consume the rng alike
        self.braces = rng.random() < 0.5
        self.open_same_line = rng.random() < 0.3

    def guard(self, cond: str, body: str | None = None) -> list[str]:
        body = body or f"return {self.err};"
        if not self.braces:
            return [f"if ({cond})", f"    {body}"]
        return [f"if ({cond}) {{", f"    {body}", "}"]

    def render(self, name: str) -> str:
        params = ", ".join(self.params) or "void"
        lines = [f"{self.ret_type} {name}({params})"]
        if self.open_same_line:
            lines[0] += " {"
        else:
            lines.append("{")
        body = self.decls + ([""] if self.decls else []) + self.pre + self.core + self.post
        lines += [("    " + b) if b else "" for b in body]
        lines.append(f"    return {self.ok};")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _fname(rng: random.Random) -> str:
    return f"{rng.choice(_MODULES)}{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"


# ----------------------------------------------------------------------------- families
# Each family gets (fn, vulnerable) and fills fn.params / fn.decls / fn.core.


def _strcpy(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    buf, src, size = nm.pick(_BUFS), nm.pick(_SRCS), rng.choice(_SIZES)
    fn.params.append(f"const char *{src}")
    fn.decls.append(f"char {buf}[{size}];")
    api = rng.choice(["strcpy({b}, {s});", "strcat({b}, {s});"])
    if api.startswith("strcat"):
        fn.core.append(f"{buf}[0] = '\\0';")
    if not vuln:
        fn.core += fn.guard(f"strlen({src}) >= sizeof({buf})")
    fn.core.append(api.format(b=buf, s=src))
    fn.core.append(f"{rng.choice(_SINKS)}({buf});")


def _memcpy(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    buf, src, n, size = nm.pick(_BUFS), nm.pick(_SRCS), nm.pick(_LENS), rng.choice(_SIZES)
    fn.params += [f"const {rng.choice(['unsigned char', 'char', 'uint8_t'])} *{src}", f"size_t {n}"]
    fn.decls.append(f"{rng.choice(['unsigned char', 'char', 'uint8_t'])} {buf}[{size}];")
    clamp = rng.random() < 0.5
    if not vuln:
        if not clamp:
            fn.core += fn.guard(f"{n} > sizeof({buf})")
        else:
            fn.core += fn.guard(f"{n} > sizeof({buf})", f"{n} = sizeof({buf});")
    fn.core.append(f"memcpy({buf}, {src}, {n});")
    fn.core.append(f"{rng.choice(_SINKS)}({buf}, {n});")


def _snprintf(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    buf, src, n, size = nm.pick(_BUFS), nm.pick(_SRCS), nm.pick(_LENS), rng.choice(_SIZES)
    fn.params += [f"const char *{src}", f"size_t {n}"]
    fn.decls.append(f"char {buf}[{size}];")
    fmt = rng.choice(['"%s"', '"/tmp/%s"', '"user=%s"', '"%s.conf"', '"[%s]"'])
    bound = n if vuln else f"sizeof({buf})"
    fn.core.append(f"snprintf({buf}, {bound}, {fmt}, {src});")
    fn.core.append(f"{rng.choice(_SINKS)}({buf}, {n});")


def _sprintf(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    buf, src, v, size = nm.pick(_BUFS), nm.pick(_SRCS), nm.pick(_INTS), rng.choice(_SIZES)
    fn.params += [f"const char *{src}", f"int {v}"]
    fn.decls.append(f"char {buf}[{size}];")
    if not vuln:
        fn.core += fn.guard(f"strlen({src}) >= sizeof({buf}) - 16")
    fmt = rng.choice(['"%s:%d"', '"%s/%d"', '"%s-%d.log"'])
    fn.core.append(f"sprintf({buf}, {fmt}, {src}, {v});")
    fn.core.append(f"{rng.choice(_SINKS)}({buf});")


def _off_by_one(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    i = nm.pick(_IDX)
    op = "<=" if vuln else "<"
    if rng.random() < 0.5:
        arr, src, bound = nm.pick(_BUFS), nm.pick(_SRCS), rng.choice(_MACROS + [str(s) for s in _SIZES])
        typ = rng.choice(["int", "long", "unsigned int", "short"])
        fn.params.append(f"const {typ} *{src}")
        fn.decls += [f"{typ} {arr}[{bound}];", f"int {i};"]
        fn.core.append(f"for ({i} = 0; {i} {op} {bound}; {i}++)")
        fn.core.append(f"    {arr}[{i}] = {src}[{i}];")
        fn.core.append(f"{rng.choice(_SINKS)}({arr});")
    else:
        buf, src = nm.pick(_BUFS), nm.pick(_SRCS)
        fn.params.append(f"const char *{src}")
        fn.decls += [f"char {buf}[{rng.choice(_SIZES)}];", f"size_t {i};"]
        fn.core.append(f"for ({i} = 0; {i} {op} sizeof({buf}) && {src}[{i}]; {i}++)")
        fn.core.append(f"    {buf}[{i}] = {src}[{i}];")
        fn.core.append(f"{buf}[sizeof({buf}) - 1] = '\\0';")
        fn.core.append(f"{rng.choice(_SINKS)}({buf});")


def _format_string(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    msg = nm.pick(_SRCS)
    fn.params.append(f"const char *{msg}")
    call = rng.choice(["printf({a});", "fprintf(stderr, {a});", "syslog(LOG_ERR, {a});", "fprintf(stdout, {a});"])
    fn.core.append(call.format(a=msg if vuln else f'"%s", {msg}'))
    fn.core.append(f"{rng.choice(_SINKS)}({msg});")


def _use_after_free(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    p, r, st, fld = nm.pick(_PTRS), nm.pick(_INTS), rng.choice(_STRUCTS), rng.choice(_FIELDS)
    fn.params.append(f"struct {st} *{p}")
    fn.decls.append(f"int {r};")
    use = f"{r} = {p}->{fld};"
    free = f"free({p});"
    fn.core += [free, use] if vuln else [use, free]
    fn.ok = r


def _double_free(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    buf, n, r = nm.pick(_BUFS), nm.pick(_LENS), nm.pick(_INTS)
    fn.params.append(f"size_t {n}")
    fn.decls += [f"char *{buf};", f"int {r};"]
    fn.core += [f"{buf} = malloc({n});"]
    fn.core += fn.guard(f"{buf} == NULL")
    fn.core.append(f"{r} = {rng.choice(_SINKS)}({buf}, {n});")
    fn.core.append(f"if ({r} < 0) {{")
    fn.core.append(f"    free({buf});")
    if not vuln:
        fn.core.append(f"    {buf} = NULL;")
    fn.core.append("}")
    fn.core.append(f"free({buf});")
    fn.ok = r


def _null_deref(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    p, n = nm.pick(_BUFS), nm.pick(_LENS)
    fn.params.append(f"size_t {n}")
    fn.decls.append(f"char *{p};")
    fn.core.append(f"{p} = {rng.choice(['malloc({n})', 'malloc({n} + 1)', 'realloc(NULL, {n})']).format(n=n)};")
    if not vuln:
        fn.core += fn.guard(f"{p} == NULL")
    fn.core.append(rng.choice([f"memset({p}, 0, {n});", f"{p}[0] = '\\0';", f"strcpy({p}, \"\");"]))
    fn.core.append(f"{rng.choice(_SINKS)}({p});")
    fn.core.append(f"free({p});")


def _int_overflow(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    st = rng.choice(_STRUCTS)
    arr, n = nm.pick(_PTRS), nm.pick(_LENS)
    fn.ret_type, fn.err, fn.ok = f"struct {st} *", "NULL", arr
    fn.params.append(f"{rng.choice(['size_t', 'unsigned int', 'uint32_t'])} {n}")
    fn.decls.append(f"struct {st} *{arr};")
    cond = f"{n} == 0" if vuln else f"{n} == 0 || {n} > SIZE_MAX / sizeof(struct {st})"
    fn.core += fn.guard(cond)
    fn.core.append(f"{arr} = malloc({n} * sizeof(struct {st}));")
    fn.core += fn.guard(f"{arr} == NULL")
    fn.core.append(f"memset({arr}, 0, {n} * sizeof(struct {st}));")


def _unchecked_return(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    fd, buf, n = nm.pick(["fd", "sock", "sockfd", "conn", "fdin"]), nm.pick(_BUFS), nm.pick(_LENS)
    fn.params.append(f"int {fd}")
    fn.decls += [f"char {buf}[{rng.choice(_SIZES)}];", f"ssize_t {n};"]
    call = rng.choice(["read({fd}, {b}, sizeof({b}) - 1)", "recv({fd}, {b}, sizeof({b}) - 1, 0)"])
    fn.core.append(f"{n} = {call.format(fd=fd, b=buf)};")
    if not vuln:
        fn.core += fn.guard(f"{n} < 0")
    fn.core.append(f"{buf}[{n}] = '\\0';")
    fn.core.append(f"{rng.choice(_SINKS)}({buf});")


def _index_unchecked(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    tab, idx, v = nm.pick(["table", "slots", "handlers", "counts", "map", "regs"]), nm.pick(_IDX), nm.pick(_INTS)
    bound = rng.choice(_MACROS)
    fn.params += [f"int {idx}", f"int {v}"]
    fn.decls.insert(0, f"static int {tab}[{bound}];")
    wrong = rng.choice([f"{idx} >= {bound}", f"{idx} < 0 || {idx} > {bound}"])
    if vuln:  # no lower bound on a signed index, or an off-by-one upper bound
        cond = wrong
    else:
        cond = f"{idx} < 0 || {idx} >= {bound}"
    fn.core += fn.guard(cond)
    fn.core.append(f"{tab}[{idx}] = {v};")


def _leak(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    buf, n, r = nm.pick(_BUFS), nm.pick(_LENS), nm.pick(_INTS)
    fn.params.append(f"size_t {n}")
    fn.decls += [f"char *{buf};", f"int {r};"]
    fn.core.append(f"{buf} = malloc({n});")
    fn.core += fn.guard(f"{buf} == NULL")
    fn.core.append(f"{r} = {rng.choice(_SINKS)}({buf}, {n});")
    if vuln:
        fn.core += [f"if ({r} < 0)", f"    return {r};"]
    else:
        fn.core += [f"if ({r} < 0) {{", f"    free({buf});", f"    return {r};", "}"]
    fn.core.append(f"free({buf});")


def _uninit(fn: _Fn, vuln: bool) -> None:
    nm, rng = fn.nm, fn.rng
    v, flag = nm.pick(_INTS), nm.pick(["mode", "flags", "kind", "opt", "op"])
    fn.params.append(f"int {flag}")
    fn.decls.append(f"int {v};" if vuln else f"int {v} = 0;")
    fn.core += [f"if ({flag} == {rng.randint(1, 9)})", f"    {v} = {rng.choice(_SINKS)}({flag});"]
    fn.ok = v


FAMILIES: dict[str, tuple[str, Callable[[_Fn, bool], None]]] = {
    "strcpy_overflow": ("CWE-120", _strcpy),
    "memcpy_overflow": ("CWE-787", _memcpy),
    "snprintf_bound": ("CWE-787", _snprintf),
    "sprintf_overflow": ("CWE-120", _sprintf),
    "off_by_one": ("CWE-193", _off_by_one),
    "format_string": ("CWE-134", _format_string),
    "use_after_free": ("CWE-416", _use_after_free),
    "double_free": ("CWE-415", _double_free),
    "null_deref": ("CWE-476", _null_deref),
    "int_overflow": ("CWE-190", _int_overflow),
    "unchecked_return": ("CWE-252", _unchecked_return),
    "index_unchecked": ("CWE-129", _index_unchecked),
    "memory_leak": ("CWE-401", _leak),
    "uninitialized": ("CWE-457", _uninit),
}

# ----------------------------------------------------------------------------- noise
# Unrelated statements, the same pool for both labels. Several have the exact shape
# of a fix (a guard, a bounded check, a `<=` loop) so no single token gives the label.


def _n_null_check(fn: _Fn) -> list[str]:
    ctx = fn.nm.pick(["ctx", "state", "cfg", "opts", "dev", "priv"])
    fn.params.insert(0, f"struct {fn.rng.choice(_STRUCTS)} *{ctx}")
    return fn.guard(f"{ctx} == NULL")


def _n_neg_check(fn: _Fn) -> list[str]:
    v = fn.nm.pick(["flags", "level", "depth", "port", "timeout", "retries"])
    fn.params.append(f"int {v}")
    return fn.guard(f"{v} < 0")


def _n_limit_check(fn: _Fn) -> list[str]:
    v = fn.nm.pick(["nrec", "nkeys", "nargs", "ndev", "nfields"])
    fn.params.append(f"size_t {v}")
    rhs = fn.rng.choice(_MACROS + [f"SIZE_MAX / sizeof({fn.rng.choice(['long', 'int', 'void *'])})"])
    return fn.guard(f"{v} > {rhs}")


def _n_strlen_check(fn: _Fn) -> list[str]:
    a, b = fn.nm.pick(["label", "prefix", "suffix", "mode_str", "host"]), fn.nm.pick(["tagbuf", "scratch2", "keybuf"])
    fn.params.append(f"const char *{a}")
    fn.decls.append(f"char {b}[{fn.rng.choice(_SIZES)}];")
    return fn.guard(f"strlen({a}) >= sizeof({b})") + [f"memset({b}, 0, sizeof({b}));"]


def _n_loop(fn: _Fn) -> list[str]:
    k, acc = fn.nm.pick(["k", "r", "t", "q"]), fn.nm.pick(["acc", "sum", "hash", "crc", "mix"])
    lim = fn.nm.pick(["rounds", "nloops", "passes", "steps"])
    fn.params.append(f"int {lim}")
    fn.decls.append(f"int {k}, {acc} = 0;")
    op = fn.rng.choice(["<", "<="])
    upd = fn.rng.choice([f"{acc} += {k};", f"{acc} ^= {k} * 31;", f"{acc} = ({acc} << 1) | ({k} & 1);"])
    return [f"for ({k} = 1; {k} {op} {lim}; {k}++)", f"    {upd}", f"{fn.rng.choice(_SINKS)}({acc});"]


def _n_log(fn: _Fn) -> list[str]:
    v = fn.nm.pick(["line_no", "id", "code", "state_id"])
    fn.decls.append(f"int {v} = {fn.rng.randint(0, 99)};")
    return [fn.rng.choice([f'printf("%d\\n", {v});', f'fprintf(stderr, "state %d\\n", {v});',
                           f'syslog(LOG_DEBUG, "code=%d", {v});'])]


def _n_counter(fn: _Fn) -> list[str]:
    c = fn.nm.pick(["calls", "hits", "seen", "stats_n"])
    fn.decls.append(f"static unsigned long {c};")
    return [fn.rng.choice([f"{c}++;", f"{c} += 1;", f"if ({c} < ULONG_MAX) {c}++;"])]


def _n_while(fn: _Fn) -> list[str]:
    w = fn.nm.pick(["budget", "spins", "tries"])
    fn.decls.append(f"int {w} = {fn.rng.choice([3, 4, 8])};")
    return [f"while ({w} > 0 && poll_ready() == 0)", f"    {w}--;"]


def _n_free_tmp(fn: _Fn) -> list[str]:
    t = fn.nm.pick(["cache", "tmpbuf", "scratchp", "work"])
    fn.decls.append(f"char *{t} = NULL;")
    return [f"{t} = strdup(\"{fn.rng.choice(['x', 'none', 'default'])}\");", f"if ({t} != NULL)",
            f"    free({t});"]


def _d_size_check(fn: _Fn) -> list[str]:
    v, b = fn.nm.pick(["nrec", "nkeys", "nargs", "ndev", "nfields"]), fn.nm.pick(["tagbuf", "scratch2", "keybuf"])
    fn.params.append(f"size_t {v}")
    fn.decls.append(f"char {b}[{fn.rng.choice(_SIZES)}];")
    return fn.guard(f"{v} > sizeof({b})") + [f"memset({b}, 0, sizeof({b}));"]


def _d_strlen_minus(fn: _Fn) -> list[str]:
    a, b = fn.nm.pick(["label", "prefix", "suffix", "mode_str", "host"]), fn.nm.pick(["tagbuf", "scratch2", "keybuf"])
    fn.params.append(f"const char *{a}")
    fn.decls.append(f"char {b}[{fn.rng.choice(_SIZES)}];")
    return fn.guard(f"strlen({a}) >= sizeof({b}) - 16") + [f"memset({b}, 0, sizeof({b}));"]


def _d_memset_sizeof(fn: _Fn) -> list[str]:
    b = fn.nm.pick(["tagbuf", "scratch2", "keybuf"])
    fn.decls.append(f"char {b}[{fn.rng.choice(_SIZES)}];")
    return [f"memset({b}, 0, sizeof({b}));"]


def _d_loop_le(fn: _Fn) -> list[str]:
    k, acc = fn.nm.pick(["k", "r", "t", "q"]), fn.nm.pick(["acc", "sum", "hash", "crc", "mix"])
    lim = fn.nm.pick(["rounds", "nloops", "passes", "steps"])
    fn.params.append(f"int {lim}")
    fn.decls.append(f"int {k}, {acc} = 0;")
    return fn.guard(f"{lim} < 0") + [f"for ({k} = 1; {k} <= {lim}; {k}++)", f"    {acc} += {k};",
                                      f"{fn.rng.choice(_SINKS)}({acc});"]


def _d_fmt_header(fn: _Fn) -> list[str]:
    t = fn.nm.pick(["progname", "prefix", "component", "tagname"])
    fn.params.append(f"const char *{t}")
    return [fn.rng.choice([f'printf("%s", {t});', f'fprintf(stderr, "%s", {t});', f'syslog(LOG_INFO, "%s", {t});'])]


def _d_or_limit(fn: _Fn) -> list[str]:
    v = fn.nm.pick(["nrec", "nkeys", "nargs", "ndev", "nfields"])
    fn.params.append(f"size_t {v}")
    return fn.guard(f"{v} == 0 || {v} > SIZE_MAX / sizeof({fn.rng.choice(['long', 'int', 'void *'])})")


def _d_range(fn: _Fn) -> list[str]:
    v = fn.nm.pick(["level", "depth", "port", "chan", "lane"])
    fn.params.append(f"int {v}")
    return fn.guard(f"{v} < 0 || {v} {fn.rng.choice(['>', '>='])} {fn.rng.choice(_MACROS)}")


def _d_init_zero(fn: _Fn) -> list[str]:
    v = fn.nm.pick(["nerr", "pending", "flags2", "seen_n"])
    fn.decls.append(f"int {v} = 0;")
    return [f"{v} += {fn.rng.choice(_SINKS)}({v});"]


_NOISE = [_n_null_check, _n_neg_check, _n_limit_check, _n_strlen_check, _n_loop, _n_log, _n_counter,
          _n_while, _n_free_tmp]


# Per family: fix-shaped statements on unrelated variables, added to BOTH labels.
_DECOYS: dict[str, Callable[[_Fn], list[str]]] = {
    "strcpy_overflow": _n_strlen_check,
    "memcpy_overflow": _d_size_check,
    "snprintf_bound": _d_memset_sizeof,
    "sprintf_overflow": _d_strlen_minus,
    "off_by_one": _d_loop_le,
    "format_string": _d_fmt_header,
    "use_after_free": _n_free_tmp,
    "double_free": _n_free_tmp,
    "null_deref": _n_null_check,
    "int_overflow": _d_or_limit,
    "unchecked_return": _n_neg_check,
    "index_unchecked": _d_range,
    "memory_leak": _n_free_tmp,
    "uninitialized": _d_init_zero,
}
DECOY_RATE = 0.6


def function(rng: random.Random, family: str, vuln: bool) -> str:
    fn = _Fn(rng)
    FAMILIES[family][1](fn, vuln)
    noises = []
    if rng.random() < DECOY_RATE:
        noises.append(_DECOYS[family])
    k = rng.choice([0, 1, 1]) if noises else rng.choice([0, 1, 1, 2])
    noises += rng.sample([x for x in _NOISE if x not in noises], k)
    rng.shuffle(noises)
    for j, noise in enumerate(noises):
        stmts = noise(fn)
        (fn.pre if j % 2 == 0 or noise in (_n_null_check, _n_neg_check) else fn.post).extend(stmts)
    return fn.render(_fname(rng))
