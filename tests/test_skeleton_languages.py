"""Skeleton, curated and outline views of the brace languages (skeleton/brace_emitter.py).

Each language gets the same small file: a function `alpha` with a long doc comment, a
function `beta` marked [HOT] in that language's comment syntax, a type `Gamma` with a member
`delta`.  The shipped real-world files under bench/fixtures/skeleton are checked too: every
skeleton parses in its own grammar without new errors, keeps every declared name, and
removes at least 60 % of the tokens per language.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import cli
import file_cache
from file_cache import FileCache, estimate_tokens
from skeleton import brace_emitter, languages
from skeleton.language_views import LanguageParser, count_errors

FIXTURES = Path(__file__).resolve().parent.parent / "bench" / "fixtures" / "skeleton"

DOC_JS = """/**
 * Alpha adds two numbers.
 * Line two of the docs.
 * Line three of the docs.
 * DOC_TAIL is on line four.
 */
"""
DOC_SLASHES = """// Alpha adds two numbers.
// Line two of the docs.
// Line three of the docs.
// DOC_TAIL is on line four.
"""
DOC_RUST = DOC_SLASHES.replace("// ", "/// ")
DOC_CS = DOC_SLASHES.replace("// ", "/// ")

SAMPLES = {
    "javascript": ("m.js", DOC_JS + """export function alpha(a, b) {
  const total = a + b; // SECRET_BODY
  return total;
}

// [HOT] the hot path
function beta(x) {
  return "HOT_BODY" + x;
}

class Gamma {
  delta(y) {
    return y * 2; // SECRET_BODY
  }
}
"""),
    "typescript": ("m.ts", DOC_JS + """export function alpha(a: number, b: number): number {
  const total = a + b; // SECRET_BODY
  return total;
}

// [HOT]
export const beta = (x: string): string => {
  return "HOT_BODY" + x;
};

export interface Gamma {
  delta(y: number): number;
}
"""),
    "tsx": ("m.tsx", DOC_JS + """export function alpha({ a }: { a: number }) {
  return <div className="SECRET_BODY">{a}</div>;
}

/* [HOT] */
export function beta(x: string) {
  return <span>{"HOT_BODY" + x}</span>;
}

export class Gamma extends Component<{}> {
  delta = () => {
    return <p>SECRET_BODY</p>;
  };
}
"""),
    "go": ("m.go", "package m\n\n" + DOC_SLASHES + """func alpha(a, b int) int {
	total := a + b // SECRET_BODY
	return total
}

// [HOT] the hot path
func beta(x string) string {
	return "HOT_BODY" + x
}

type Gamma struct {
	delta int
}

func (g *Gamma) Epsilon() int {
	return g.delta // SECRET_BODY
}
"""),
    "rust": ("m.rs", DOC_RUST + """pub fn alpha(a: i32, b: i32) -> i32 {
    let total = a + b; // SECRET_BODY
    total
}

// [HOT] the hot path
#[inline]
fn beta(x: &str) -> String {
    format!("HOT_BODY{}", x)
}

pub struct Gamma {
    pub delta: i32,
}

impl Gamma {
    pub fn epsilon(&self) -> i32 {
        self.delta // SECRET_BODY
    }
}
"""),
    "java": ("Gamma.java", """package m;

public class Gamma {
    private int delta;

""" + "".join("    " + line + "\n" for line in DOC_JS.splitlines()) + """    public int alpha(int a, int b) {
        int total = a + b; // SECRET_BODY
        return total;
    }

    // [HOT] the hot path
    @Override
    public String beta(String x) {
        return "HOT_BODY" + x;
    }
}
"""),
    "c": ("m.c", "#include <stdio.h>\n\n" + DOC_JS + """int alpha(int a, int b)
{
    int total = a + b; /* SECRET_BODY */
    return total;
}

/* [HOT] the hot path */
static const char *beta(const char *x)
{
    return "HOT_BODY";
}

struct Gamma {
    int delta;
};
"""),
    "cpp": ("m.cpp", "#include <string>\n\nnamespace m {\n\n" + DOC_SLASHES + """int alpha(int a, int b) {
    int total = a + b;  // SECRET_BODY
    return total;
}

// [HOT] the hot path
std::string beta(const std::string& x) {
    return "HOT_BODY" + x;
}

class Gamma {
 public:
    int delta() const { return 42 + 1; /* SECRET_BODY */ }
};

}  // namespace m
"""),
    "csharp": ("m.cs", """namespace M
{
    public class Gamma
    {
        public int Delta { get { return 42; /* SECRET_BODY */ } }

""" + "".join("        " + line + "\n" for line in DOC_CS.splitlines()) + """        public int alpha(int a, int b)
        {
            var total = a + b; // SECRET_BODY
            return total;
        }

        // [HOT] the hot path
        public string beta(string x)
        {
            return "HOT_BODY" + x;
        }
    }
}
"""),
}


def _parse_errors(language: str, text: str) -> int:
    parser = LanguageParser(language)
    return count_errors(parser.parse_tree(text.encode()).root_node)[0]


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_views_of_each_language(language: str, tmp_path: Path):
    name, code = SAMPLES[language]
    path = tmp_path / name
    path.write_text(code)
    assert _parse_errors(language, code) == 0, "the sample itself must be valid"
    cache = FileCache()

    skeleton = cache.get_view(path, "skeleton")
    assert skeleton.language == language and skeleton.note == "" and not skeleton.has_errors
    assert "SECRET_BODY" not in skeleton.text and "HOT_BODY" not in skeleton.text
    assert "/* ... */" in skeleton.text
    assert "Alpha adds two numbers." in skeleton.text and "DOC_TAIL" not in skeleton.text
    assert "[... 3 more lines]" in skeleton.text or "[... 4 more lines]" in skeleton.text
    for word in ("alpha", "beta", "Gamma", "delta"):
        assert word in skeleton.text.replace("Delta", "delta")
    assert _parse_errors(language, skeleton.text) == 0, skeleton.text

    curated = cache.get_view(path, "curated")
    assert "HOT_BODY" in curated.text and "SECRET_BODY" not in curated.text
    assert "DOC_TAIL" in curated.text, "curated mode keeps doc comments whole"
    assert _parse_errors(language, curated.text) == 0, curated.text

    outline = cache.get_view(path, "outline")
    names = {item.name for item in outline.outline}
    assert {"alpha", "beta"} <= names and "Gamma" in names
    assert all(f"{item.name}  [{item.line}-{item.end_line}]" in outline.text
               or f"{item.qualname}  [{item.line}-{item.end_line}]" in outline.text for item in outline.outline)

    parser = file_cache.parser_for(language)
    assert isinstance(parser, LanguageParser)
    before = parser.declared_names(parser.parse(code))
    assert before <= parser.declared_names(parser.parse(skeleton.text)) and "alpha" in before


def test_go_methods_show_their_receiver_in_the_outline():
    parser = LanguageParser("go")
    items = parser.get_outline(SAMPLES["go"][1])
    method = next(i for i in items if i.name == "Epsilon")
    assert (method.kind, method.qualname, method.depth) == ("method", "Gamma.Epsilon", 0)
    assert "method Gamma.Epsilon  [" in parser.get_outline_text(SAMPLES["go"][1])
    struct = next(i for i in items if i.name == "Gamma")
    assert struct.kind == "struct"


def test_hot_marker_inside_a_string_or_far_above_does_not_count():
    code = ('// [HOT]\n\nfunction far() {\n  return 1 + 2 + 3 + 4;\n}\n'
            'function s() {\n  return "[HOT]" + 1 + 2 + 3;\n}\n')
    curated = LanguageParser("javascript").get_curated_view(code)
    assert "1 + 2 + 3 + 4" not in curated and '"[HOT]"' not in curated


def test_lone_macro_lines_do_not_swallow_a_namespace():
    """`FMT_BEGIN_NAMESPACE` alone on a line makes the grammar read what follows as one
    function, whose "body" the skeleton would cut; masking keeps every declaration."""
    header = """#pragma once
#define FMT_BEGIN_NAMESPACE namespace fmt {
#define FMT_END_NAMESPACE }
FMT_BEGIN_NAMESPACE
FMT_BEGIN_DETAIL_NAMESPACE
template <typename T> class buffer {
 public:
  FMT_CONSTEXPR void push_back(const T& value) { grow(size_ + 1); ptr_[size_++] = value; }
  FMT_API auto size() const noexcept -> size_t { return size_; }
};
FMT_END_DETAIL_NAMESPACE
FMT_INLINE auto format_to_n(char* out, size_t n) -> size_t {
  return n + static_cast<size_t>(out[0]);
}
FMT_END_NAMESPACE
"""
    parser = LanguageParser("cpp")
    raw = parser._parser().parse(header.encode())
    assert raw.root_node.has_error or any(
        c.type == "function_definition" and b"FMT_BEGIN" in header.encode()[c.start_byte:c.end_byte]
        for c in raw.root_node.named_children), "the unmasked grammar misreads this header"
    parsed = parser.parse(header)
    assert not parsed.has_errors
    skeleton = parser.view(parsed, "skeleton")
    assert skeleton.note == "" and "FMT_BEGIN_NAMESPACE" in skeleton.text
    for name in ("buffer", "push_back", "size", "format_to_n"):
        assert name in skeleton.text
    assert "ptr_[size_++]" not in skeleton.text
    assert {"buffer", "format_to_n"} <= {i.name for i in skeleton.outline}


def test_macro_masking_keeps_offsets_and_expressions():
    src = (b"x = a +\n    FOO_BAR\n    ;\nLZ4LIB_API int f(void);\n#define G_BEGIN_DECLS\n"
           b"G_BEGIN_DECLS\nint g(void) FMT_NOEXCEPT;\n")
    masked = languages.mask_c_macros(src)
    assert len(masked) == len(src)
    assert b"FOO_BAR" in masked, "a macro inside an expression that spans lines stays"
    assert b"LZ4LIB_API" not in masked and b"#define G_BEGIN_DECLS" in masked
    assert b"\nG_BEGIN_DECLS" not in masked and b"FMT_NOEXCEPT" not in masked


def test_dot_h_is_c_or_cpp_by_content(tmp_path: Path):
    c_header, cpp_header = tmp_path / "c.h", tmp_path / "cpp.h"
    c_header.write_text('#ifdef __cplusplus\nextern "C" {\n#endif\nint f(int x);\n#ifdef __cplusplus\n}\n#endif\n')
    cpp_header.write_text("namespace n {\nclass A { public: int f() const { return 1; } };\n}\n")
    cache = FileCache()
    assert cache.get_view(c_header, "skeleton").language == "c"
    view = cache.get_view(cpp_header, "skeleton")
    assert view.language == "cpp" and "class A" in view.text and not view.has_errors


def test_long_literals_and_macros_are_cut_but_code_in_them_is_kept():
    numbers = ", ".join(str(i) for i in range(400))
    js = f"const TABLE = [{numbers}];\nconst handlers = {{\n  onClick() {{ return 1 + 2 + 3 + 4 + 5; }},\n" \
         + "  pad: 0,\n" * 10 + "};\n"
    skeleton = LanguageParser("javascript").get_skeleton(js)
    assert "const TABLE = [ /* ... */ ];" in skeleton and "399" not in skeleton
    assert "onClick()" in skeleton, "an object that holds methods is walked, not cut"
    c = "#define BIG(x) do { \\\n  f(x); \\\n  g(x); \\\n} while (0)\n#define SMALL 1\n"
    c_skeleton = LanguageParser("c").get_skeleton(c)
    assert "#define BIG(x) /* ... */" in c_skeleton and "#define SMALL 1" in c_skeleton


def test_a_skeleton_that_would_not_parse_becomes_a_marked_outline(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(brace_emitter, "BODY_PLACEHOLDER", b"{ ... ")     # not valid anywhere
    parser = LanguageParser("go")
    view = parser.view(parser.parse(SAMPLES["go"][1]), "skeleton")
    assert view.note.startswith("outline only: the skeleton view would not parse")
    assert view.text.startswith("// NOTE: outline only:") and "func alpha  [" in view.text


def test_unknown_suffix_and_missing_grammar_fall_back_to_full_text(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    kt = tmp_path / "Main.kt"
    kt.write_text("fun main() { println(1) }\n")
    cache = FileCache()
    view = cache.get_view(kt, "skeleton")
    assert view.text == kt.read_text() and view.note == "no skeleton view for .kt files; full text"

    go = tmp_path / "m.go"
    go.write_text(SAMPLES["go"][1])
    broken = languages.LanguageSpec(**{**languages.SPECS["go"].__dict__, "module": "tree_sitter_not_installed"})
    monkeypatch.setitem(languages.SPECS, "go", broken)
    monkeypatch.setattr(languages, "_LOADED", {})
    monkeypatch.setattr(file_cache, "_PARSERS", {})
    view = FileCache().get_view(go, "outline")
    assert view.text == go.read_text()
    assert view.note == "full text: tree-sitter-not-installed is not installed (pip install tree-sitter-not-installed)"


def test_cache_keys_other_languages_by_mtime_and_size(tmp_path: Path):
    path = tmp_path / "m.rs"
    path.write_text(SAMPLES["rust"][1])
    cache = FileCache()
    first = cache.get_view(path, "skeleton")
    assert cache.get_view(path, "skeleton") is first and cache.stats()["parses"] == 1
    cache.get_view(path, "outline")
    assert cache.stats()["parses"] == 1, "one parse serves every view"
    path.write_text(SAMPLES["rust"][1] + "\npub fn zeta() -> u8 { 7 + 1 }\n")
    os.utime(path, ns=(1, 1))
    assert "pub fn zeta() -> u8" in cache.get_view(path, "skeleton").text
    assert cache.stats()["parses"] == 2


@pytest.mark.parametrize("mode", ["skeleton", "curated", "outline"])
def test_cli_skeleton_works_for_every_language(mode: str, tmp_path: Path, capsys: pytest.CaptureFixture):
    paths = []
    for language, (name, code) in sorted(SAMPLES.items()):
        path = tmp_path / language / name
        path.parent.mkdir()
        path.write_text(code)
        paths.append(str(path))
    assert cli.main(["skeleton", *paths, "--mode", mode]) == 0
    out = capsys.readouterr().out
    assert out.count("# ==== ") == len(SAMPLES) and "full text" not in out
    assert ("SECRET_BODY" in out) is False
    assert ("HOT_BODY" in out) is (mode == "curated")


def _fixture_files() -> dict[str, list[Path]]:
    by_language: dict[str, list[Path]] = {}
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_file():
            language = file_cache.language_of(path, path.read_bytes()[:65536])
            if language is not None:
                by_language.setdefault(language, []).append(path)
    return by_language


def test_fixtures_cover_every_language_and_ship_their_licences():
    files = _fixture_files()
    assert set(files) == set(languages.SPECS)
    for folder in FIXTURES.iterdir():
        if folder.is_dir():
            assert any(p.name.startswith(("LICENSE", "COPYRIGHT")) for p in folder.iterdir()) or \
                all(b"License" in p.read_bytes()[:4000] for p in folder.iterdir()), folder


@pytest.mark.parametrize("language", sorted(languages.SPECS))
def test_real_files_give_valid_skeletons_that_keep_every_name(language: str):
    parser = LanguageParser(language)
    full = kept = 0
    for path in _fixture_files()[language]:
        src = path.read_bytes()
        parsed = parser.parse(src)
        view = parser.view(parsed, "skeleton")
        assert view.note == "", f"{path.name}: {view.note}"
        text = view.text.split("\n", 1)[1] if view.has_errors else view.text
        reparsed = parser.parse(text)
        assert count_errors(reparsed.tree.root_node)[0] <= count_errors(parsed.tree.root_node)[0], path.name
        lost = parser.declared_names(parsed) - parser.declared_names(reparsed)
        assert not lost, f"{path.name} lost {sorted(lost)[:5]}"
        full += estimate_tokens(src.decode("utf-8", "replace"))
        kept += estimate_tokens(view.text)
    assert 1 - kept / full >= 0.60, f"{language}: only {1 - kept / full:.1%} fewer tokens"
