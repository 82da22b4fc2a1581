"""Broken whole files: raw bytes, documents that are not mappings, malformed YAML, alias
bombs, and `base:` chains through such files."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.helpers.fuzz_bases import base_names, base_text, fresh
from tests.helpers.fuzz_runner import BadInput, as_input, dump


@st.composite
def raw_bytes(draw) -> BadInput:
    """Empty, blank, comment-only, not UTF-8, binary, UTF-16, or too big."""
    choice = draw(st.sampled_from(["blank", "not utf-8", "binary", "utf-16", "too big"]))
    if choice == "blank":
        content = draw(st.text(alphabet=" \n\r", max_size=50)).encode()
        content += draw(st.sampled_from([b"", b"# just a comment\n", b"---\n", b"...\n"]))
    elif choice == "not utf-8":
        text = base_text(draw(base_names())).encode()
        at = draw(st.integers(0, len(text)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80"]))
        content = text[:at] + bad + text[at:]
    elif choice == "binary":
        content = draw(st.binary(max_size=200)) + b"\xfe\xff" + draw(st.binary(max_size=50))
    elif choice == "utf-16":
        content = base_text(draw(base_names())).encode(draw(st.sampled_from(["utf-16", "utf-32"])))
    else:
        content = b"# " + b"x" * (1_000_000 + draw(st.integers(0, 1000))) + b"\nmodel: {}\n"
    return BadInput(f"raw bytes: {choice}", {"config.yaml": content})


@st.composite
def non_mapping(draw) -> BadInput:
    """A document that is a list, a scalar, null, a set, or a mapping with non-string keys."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
    choice = draw(st.sampled_from(["scalar", "list", "listed base", "tagged", "keys"]))
    if choice == "scalar":
        return as_input("non-mapping", draw(scalars))
    if choice == "list":
        return as_input("non-mapping", draw(st.lists(scalars, max_size=5)))
    if choice == "listed base":
        return as_input("non-mapping", [fresh(draw(base_names()))])
    if choice == "tagged":
        text = draw(
            st.sampled_from(
                [
                    "!!set {model: null}",
                    "!!omap [model: {type: mlp}]",
                    "!!pairs [model: x]",
                    "~",
                    "null",
                    "--- |\n  model: x\n",
                ]
            )
        )
        return BadInput("non-mapping", {"config.yaml": text.encode()})
    key = draw(st.one_of(st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False)))
    return as_input("non-mapping", {key: 1, **fresh(draw(base_names()))})


MALFORMED_LINES = [  # the base text has no brackets or quotes, so nothing closes these
    "extra: [1, 2", "extra: {a: 1", 'extra: "unclosed', "extra: 'unclosed", "\textra: 1",
    "extra: value: other", "extra: *undefined_anchor", "extra: &a [1, *a", "@reserved: 1",
    # ... and these are errors wherever they stand
    "extra: !!python/object/apply:os.system ['id']", "extra: !!python/name:builtins.eval ''",
    "]", "}", "extra: `backtick`",
]  # fmt: skip


@st.composite
def malformed_yaml(draw) -> BadInput:
    """Unclosed brackets and quotes, tab indentation, unknown tags, duplicate keys, junk."""
    lines = base_text(draw(base_names())).splitlines()
    choice = draw(st.sampled_from(["insert", "tab indent", "duplicate key", "directive"]))
    if choice == "insert":
        bad = draw(st.sampled_from(MALFORMED_LINES))
        at = len(lines) if MALFORMED_LINES.index(bad) < 9 else draw(st.integers(0, len(lines)))
        lines.insert(at, bad)
    elif choice == "tab indent":
        i = draw(st.sampled_from([i for i, line in enumerate(lines) if line.startswith("  ")]))
        lines[i] = "\t" + lines[i].lstrip(" ")
    elif choice == "duplicate key":  # e.g. a second `seed: 1`, valid but for the duplicate
        top = [line.split(":")[0] for line in lines if line[:1].isalpha()]
        lines.append(draw(st.sampled_from(top)) + ": 1")
    else:
        lines.insert(0, draw(st.sampled_from(["%YAML 2.0\n---", "%TAG ! \n---", "%YAML 1.1 x"])))
    return BadInput(f"malformed YAML: {choice}", {"config.yaml": "\n".join(lines).encode()})


def flow_bomb(width: int, depth: int) -> str:
    """`[&l0 [lol], &l1 [*l0, *l0], &l2 [*l1, *l1], ...]`: width**depth values."""
    levels = ["&l0 [lol]"]
    levels += [f"&l{k} [" + ", ".join([f"*l{k - 1}"] * width) + "]" for k in range(1, depth + 1)]
    return "[" + ", ".join(levels) + "]"


@st.composite
def alias_bomb(draw) -> BadInput:
    """Billion laughs: few aliases expanding to millions of values, many aliases, a cycle."""
    width = draw(st.integers(2, 12))
    few = next(d for d in range(1, 40) if width**d > 1_000_000)  # well over the bound, but
    many = 100 // width + 1  # small enough that a regression is slow, not out of memory
    depth = draw(st.sampled_from([few, many]))
    bomb = draw(st.sampled_from([flow_bomb(width, depth), "&r [*r]", "&r {a: *r}"]))
    where = draw(st.sampled_from(["layer argument", "unknown key", "metrics"]))
    base = fresh("sequential")
    if where == "layer argument":  # the one place where a nested list is a plain value
        base["model"]["layers"][0]["kernel_size"] = "@BOMB@"
    else:
        base["laughs" if where == "unknown key" else "metrics"] = "@BOMB@"
    text = dump(base).decode().replace("'@BOMB@'", bomb)
    return BadInput("alias bomb", {"config.yaml": text.encode()})


@st.composite
def bad_base_chain(draw) -> BadInput:
    """`base:` naming a file that is itself broken, a cycle, or a chain that is too long."""
    base = fresh(draw(base_names()))
    choice = draw(st.sampled_from(["broken parent", "cycle", "too deep"]))
    if choice == "broken parent":
        parent = draw(st.one_of(raw_bytes(), non_mapping(), malformed_yaml()))
        files = {"parent.yaml": parent.files["config.yaml"]}
        return BadInput("bad base", {**files, "config.yaml": dump({"base": "parent.yaml", **base})})
    if choice == "cycle":
        files = {"a.yaml": dump({"base": "config.yaml"})}
        return BadInput("bad base", {**files, "config.yaml": dump({"base": "a.yaml", **base})})
    files = {f"b{i}.yaml": dump({"base": f"b{i + 1}.yaml"}) for i in range(11)}
    return BadInput("bad base", {**files, "b11.yaml": dump(base),
                                 "config.yaml": dump({"base": "b0.yaml"})})  # fmt: skip
