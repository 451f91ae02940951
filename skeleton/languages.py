"""The languages with skeleton views besides Python: grammars, file detection, node tables.

Each language is a `LanguageSpec`: which PyPI grammar wheel parses it, which file suffixes it
owns, and which tree-sitter node types play which part for `skeleton.brace_emitter`:

- ``callables``: functions, methods, lambdas; the value says where the body is (a field name,
  or ``"child:<type>"`` for the first child of that type) and whether an expression body may be
  replaced by a block (``True`` for arrow functions, closures and lambdas, where ``x => e`` and
  ``x => { ... }`` are both valid).
- ``literals``: bracketed data (arrays, object and initializer lists) whose inside may become
  ``/* ... */`` when it is long.
- ``outline``: declarations listed by the outline view, with the kind word shown there.

Grammars load lazily, one per language on first use (5-25 ms each), so a Python-only project
never loads them.  A missing wheel is reported as `GrammarMissing` and views fall back to the
full text with a note.

C and C++ headers are full of macros the grammar cannot expand: a line with only
``FMT_BEGIN_NAMESPACE`` makes it read the whole namespace that follows as one function, and
``LZ4LIB_API int f(void);`` hides the declaration.  `mask_c_macros` blanks such macro uses with
spaces before parsing (offsets stay exact; the view still copies the original bytes).
"""
from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from dataclasses import dataclass, field

from tree_sitter import Language

log = logging.getLogger(__name__)


class GrammarMissing(ImportError):
    """The grammar wheel of a language is not installed."""


@dataclass(frozen=True)
class LanguageSpec:
    name: str
    fence: str                                  # markdown fence tag for this language
    module: str                                 # the PyPI wheel's module, e.g. tree_sitter_go
    function: str                               # its function returning the language pointer
    suffixes: tuple[str, ...]
    callables: dict[str, tuple[str, bool]]
    literals: frozenset[str]
    outline: dict[str, str]
    comments: frozenset[str] = frozenset({"comment"})
    # nodes whose inside is data for the outline walk, never declarations (strings and the like)
    opaque: frozenset[str] = frozenset()
    # a regex over a literal's text: when it matches, the literal may hold a function or class
    # whose name matters, so it is walked instead of cut
    code_hint: bytes = rb"function|=>|class\b|\)\s*\{"
    mask_macros: bool = False
    macro_values: frozenset[str] = frozenset()  # #define nodes whose long value is cut
    extra: dict = field(default_factory=dict)


_JS_CALLABLES = {
    "function_declaration": ("body", False), "generator_function_declaration": ("body", False),
    "function_expression": ("body", False), "function": ("body", False),
    "generator_function": ("body", False), "arrow_function": ("body", True),
    "method_definition": ("body", False), "class_static_block": ("body", False),
}
_JS_OUTLINE = {
    "class_declaration": "class", "class": "class", "function_declaration": "function",
    "generator_function_declaration": "function", "method_definition": "method",
}
_TS_OUTLINE = {**_JS_OUTLINE, "abstract_class_declaration": "class", "interface_declaration": "interface",
               "type_alias_declaration": "type", "enum_declaration": "enum", "internal_module": "namespace",
               "module": "namespace", "abstract_method_signature": "method", "function_signature": "function"}
_C_OUTLINE = {"function_definition": "function", "struct_specifier": "struct", "union_specifier": "union",
              "enum_specifier": "enum", "type_definition": "type"}
_STRINGS = frozenset({"string", "template_string", "string_literal", "raw_string_literal",
                      "interpreted_string_literal", "char_literal", "character_literal",
                      "verbatim_string_literal", "text_block", "concatenated_string"})

SPECS: dict[str, LanguageSpec] = {spec.name: spec for spec in (
    LanguageSpec(
        "javascript", "javascript", "tree_sitter_javascript", "language", (".js", ".mjs", ".cjs", ".jsx"),
        _JS_CALLABLES, frozenset({"array", "object"}), _JS_OUTLINE, opaque=_STRINGS),
    LanguageSpec(
        "typescript", "typescript", "tree_sitter_typescript", "language_typescript", (".ts", ".mts", ".cts"),
        _JS_CALLABLES, frozenset({"array", "object"}), _TS_OUTLINE, opaque=_STRINGS),
    LanguageSpec(
        "tsx", "tsx", "tree_sitter_typescript", "language_tsx", (".tsx",),
        _JS_CALLABLES, frozenset({"array", "object"}), _TS_OUTLINE, opaque=_STRINGS),
    LanguageSpec(
        "go", "go", "tree_sitter_go", "language", (".go",),
        {"function_declaration": ("body", False), "method_declaration": ("body", False),
         "func_literal": ("body", False)},
        frozenset({"literal_value"}),
        {"function_declaration": "func", "method_declaration": "method", "type_spec": "type",
         "type_alias": "type"},
        opaque=_STRINGS, code_hint=rb"\bfunc\b"),
    LanguageSpec(
        "rust", "rust", "tree_sitter_rust", "language", (".rs",),
        {"function_item": ("body", False), "closure_expression": ("body", True)},
        frozenset({"array_expression", "field_initializer_list", "token_tree"}),
        {"function_item": "fn", "struct_item": "struct", "enum_item": "enum", "union_item": "union",
         "trait_item": "trait", "impl_item": "impl", "mod_item": "mod", "type_item": "type",
         "macro_definition": "macro", "function_signature_item": "fn"},
        comments=frozenset({"line_comment", "block_comment"}), opaque=_STRINGS,
        code_hint=rb"\bfn\b|\bimpl\b|\|[^|\n]*\|\s*[{(]"),
    LanguageSpec(
        "java", "java", "tree_sitter_java", "language", (".java",),
        {"method_declaration": ("body", False), "constructor_declaration": ("body", False),
         "compact_constructor_declaration": ("body", False), "lambda_expression": ("body", True),
         "static_initializer": ("child:block", False)},
        frozenset({"array_initializer", "element_value_array_initializer"}),
        {"class_declaration": "class", "interface_declaration": "interface", "enum_declaration": "enum",
         "record_declaration": "record", "annotation_type_declaration": "@interface",
         "method_declaration": "method", "constructor_declaration": "constructor"},
        comments=frozenset({"line_comment", "block_comment"}), opaque=_STRINGS,
        code_hint=rb"->|\bnew\b[^;]*\)\s*\{|\bclass\b"),
    LanguageSpec(
        "c", "c", "tree_sitter_c", "language", (".c", ".h"),
        {"function_definition": ("body", False)},
        frozenset({"initializer_list"}), _C_OUTLINE, opaque=_STRINGS, code_hint=rb"(?!)",
        mask_macros=True, macro_values=frozenset({"preproc_def", "preproc_function_def"})),
    LanguageSpec(
        "cpp", "cpp", "tree_sitter_cpp", "language", (".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++",
                                                       ".ipp", ".inl", ".tpp"),
        {"function_definition": ("body", False), "lambda_expression": ("body", False)},
        frozenset({"initializer_list"}),
        {**_C_OUTLINE, "class_specifier": "class", "namespace_definition": "namespace",
         "concept_definition": "concept", "alias_declaration": "using"},
        opaque=_STRINGS, code_hint=rb"\]\s*\(|\]\s*\{", mask_macros=True,
        macro_values=frozenset({"preproc_def", "preproc_function_def"})),
    LanguageSpec(
        "csharp", "csharp", "tree_sitter_c_sharp", "language", (".cs",),
        {"method_declaration": ("body", False), "constructor_declaration": ("body", False),
         "destructor_declaration": ("body", False), "operator_declaration": ("body", False),
         "conversion_operator_declaration": ("body", False), "accessor_declaration": ("body", False),
         "local_function_statement": ("body", False), "lambda_expression": ("body", True),
         "anonymous_method_expression": ("child:block", False)},
        frozenset({"initializer_expression"}),
        {"class_declaration": "class", "struct_declaration": "struct", "interface_declaration": "interface",
         "enum_declaration": "enum", "record_declaration": "record", "namespace_declaration": "namespace",
         "file_scoped_namespace_declaration": "namespace", "method_declaration": "method",
         "constructor_declaration": "constructor", "property_declaration": "property",
         "delegate_declaration": "delegate", "event_declaration": "event"},
        opaque=_STRINGS, code_hint=rb"=>|\bdelegate\b|\bclass\b"),
)}

_BY_SUFFIX = {suffix: spec for spec in SPECS.values() for suffix in spec.suffixes}
# A header is C++ when it uses any of these (C headers often hold `extern "C"`, which is not one).
_CPP_HINT = re.compile(rb"^[ \t]*(?:namespace\b|template[ \t]*<|class[ \t]+\w+[^;(]*\{|(?:public|private|protected)[ \t]*:"
                       rb"|using[ \t]+namespace\b|#[ \t]*include[ \t]*<(?:string|vector|memory|iostream|cstdint|cstddef"
                       rb"|type_traits|utility|map|functional|algorithm)>)|\bstd::|\bconstexpr\b|\bnullptr\b", re.M)


def suffix_of(path: str | os.PathLike) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


def spec_for_path(path: str | os.PathLike, head: bytes = b"") -> LanguageSpec | None:
    """The language of a file by its suffix; a `.h` file is C++ when `head` (its text) says so."""
    spec = _BY_SUFFIX.get(suffix_of(path))
    if spec is not None and spec.name == "c" and suffix_of(path) == ".h" and _CPP_HINT.search(head):
        return SPECS["cpp"]
    return spec


def has_grammar(path: str | os.PathLike) -> bool:
    """Whether a file's suffix belongs to a language with views (the grammar may still be missing)."""
    return suffix_of(path) in _BY_SUFFIX


_LOADED: dict[str, Language] = {}
_LOAD_LOCK = threading.Lock()


def load_language(spec: LanguageSpec) -> Language:
    """The tree-sitter Language of `spec`, loaded once; raises GrammarMissing."""
    language = _LOADED.get(spec.name)
    if language is not None:
        return language
    with _LOAD_LOCK:
        if spec.name not in _LOADED:
            try:
                module = importlib.import_module(spec.module)
            except ImportError as exc:
                package = spec.module.replace("_", "-")
                raise GrammarMissing(f"{package} is not installed (pip install {package})") from exc
            _LOADED[spec.name] = Language(getattr(module, spec.function)())
            log.debug("loaded the %s grammar", spec.name)
        return _LOADED[spec.name]


# ---------------------------------------------------------------------------------------------
# C / C++ macros

_MACRO = rb"[A-Z][A-Z0-9]*_[A-Z0-9_]*"
_ARGS = rb"(?:[ \t]*\((?:[^()\n]|\([^()\n]*\))*\))?"
# A line that is only a macro use without `;`: FMT_BEGIN_NAMESPACE, G_BEGIN_DECLS, NS_BEGIN(x).
_LONE_MACRO = re.compile(rb"(?m)^[ \t]*(?!#)((?:" + _MACRO + rb"|[A-Z][A-Z0-9_]{2,})" + _ARGS
                         + rb")[ \t]*(?://[^\n]*|/\*[^\n]*\*/[ \t]*)?$")
# Macros used as specifiers in front of a declaration or after a signature:
#   FMT_CONSTEXPR auto f(), LZ4LIB_API int g(void), template <...> FMT_INLINE void h(),
#   static LZ4_FORCE_INLINE int k(), void f() FMT_NOEXCEPT {
# What may stand before them on the line is checked in Python (`_SPEC_BEFORE`).
_SPEC_MACRO = re.compile(rb"(?<![A-Za-z0-9_])(" + _MACRO + rb"(?:[ \t]+" + _MACRO + rb")*)"
                         rb"(?=[ \t]+[A-Za-z_~*&:]|[ \t]*(?:[{;]|->))")
_SPEC_BEFORE = re.compile(rb"(?:^|[>)]|\b(?:inline|static|extern|friend|constexpr|virtual|explicit))[ \t]*$")
_STATEMENT_END = (b";", b"{", b"}", b">", b")", b"/", b"\\")


def mask_c_macros(src: bytes) -> bytes:
    """`src` with macro uses the C/C++ grammar misreads replaced by spaces (same length).

    Only lines outside preprocessor directives are touched; a lone macro line counts only after
    a line that ends a statement or a directive (or another lone macro), so a macro inside an
    expression that spans lines stays.  Code inside block comments or strings is not tracked:
    the worst case there is a blanked word in a comment's copy that the grammar never looks at.
    """
    spans: list[tuple[int, int]] = []
    masked_line_end = -1
    for m in _LONE_MACRO.finditer(src):
        line_start = m.start()
        prev_end = line_start - 1
        while prev_end > 0 and src[prev_end - 1:prev_end] in (b" ", b"\t", b"\n"):
            prev_end -= 1        # back over blank lines to the previous non-blank line
        prev_start = src.rfind(b"\n", 0, prev_end) + 1
        prev = src[prev_start:prev_end].strip()
        if prev_end <= 0 or prev_end == masked_line_end or prev.endswith(_STATEMENT_END) \
                or prev.startswith((b"#", b"//", b"*")):
            spans.append((m.start(1), m.end(1)))
            masked_line_end = m.end()
    for m in _SPEC_MACRO.finditer(src):
        line_start = src.rfind(b"\n", 0, m.start(1)) + 1
        before = src[line_start:m.start(1)]
        if _SPEC_BEFORE.search(before) and not before.lstrip().startswith(b"#"):
            spans.append((m.start(1), m.end(1)))
    if not spans:
        return src
    out = bytearray(src)
    for start, end in spans:
        out[start:end] = b" " * (end - start)
    return bytes(out)
