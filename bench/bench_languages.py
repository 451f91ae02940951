"""Skeleton views of JS, TS, TSX, Go, Rust, Java, C, C++ and C# on real open-source files.

    python bench/bench_languages.py [--quick] [--out-dir DIR]

Corpus: bench/fixtures/skeleton/<language>/ (files from npm, PyPI and Debian packages, each
with its licence; README.md there lists where each came from).  Python is measured by
bench_skeleton.py over the stdlib.

Per language (best of 5 passes, interleaved; --quick: 1):
  grammar_parse_mb_s   tree-sitter's own parse of the same bytes, in memory (the baseline)
  cold_skeleton_mb_s   new FileCache per pass: stat + read + decode + (C/C++: macro masking) +
                       parse + skeleton + the re-parse that checks the skeleton
  cold_vs_parse        cold skeleton time / grammar parse time
  grammar_load_ms      first `Language()` of the wheel in this process (start-up cost)
  token_reduction_pct  1 - tokens(skeleton) / tokens(full), tokens = ceil(chars / 4)
  invalid_skeletons    skeletons with more ERROR/MISSING nodes than their source in their own
                       grammar, or that lost a declared name, or fell back to the outline
Targets: token reduction >= 60 %, 0 invalid skeletons, cold skeleton <= 3x the grammar's parse.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import file_cache  # noqa: E402
from bench import common  # noqa: E402
from skeleton import languages  # noqa: E402
from skeleton.language_views import LanguageParser, count_errors  # noqa: E402

FIXTURES = ROOT / "bench" / "fixtures" / "skeleton"
MB = 1024 * 1024
MIN_REDUCTION_PCT = 60.0
MAX_COLD_VS_PARSE = 3.0


def corpus() -> dict[str, list[Path]]:
    by_language: dict[str, list[Path]] = {}
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_file():
            language = file_cache.language_of(path, path.read_bytes()[:65536])
            if language is not None and language != "python":
                by_language.setdefault(language, []).append(path)
    return by_language


def measure(language: str, files: list[Path], passes: int) -> dict:
    start = time.perf_counter()
    languages.load_language(languages.SPECS[language])
    load_ms = (time.perf_counter() - start) * 1000
    parser = LanguageParser(language)
    sources = [p.read_bytes() for p in files]
    size = sum(len(s) for s in sources)
    raw = parser._parser()

    def grammar_pass() -> None:
        for src in sources:
            raw.parse(src)

    def cold_pass() -> None:
        cache = file_cache.FileCache()
        for path in files:
            cache.get_view(path, "skeleton")

    parse_s = cold_s = float("inf")
    for _ in range(passes):
        t = time.perf_counter()
        grammar_pass()
        parse_s = min(parse_s, time.perf_counter() - t)
        t = time.perf_counter()
        cold_pass()
        cold_s = min(cold_s, time.perf_counter() - t)

    full_tokens = skel_tokens = invalid = 0
    per_file = {}
    for path, src in zip(files, sources, strict=True):
        parsed = parser.parse(src)
        view = parser.view(parsed, "skeleton")
        text = view.text.split("\n", 1)[1] if view.has_errors else view.text    # drop the NOTE line
        reparsed = parser.parse(text)
        new_errors = count_errors(reparsed.tree.root_node)[0] - count_errors(parsed.tree.root_node)[0]
        lost = parser.declared_names(parsed) - parser.declared_names(reparsed)
        bad = bool(view.note) or new_errors > 0 or bool(lost)
        invalid += bad
        full = file_cache.estimate_tokens(src.decode("utf-8", "replace"))
        kept = file_cache.estimate_tokens(view.text)
        full_tokens += full
        skel_tokens += kept
        per_file[path.name] = {"bytes": len(src), "token_reduction_pct": round(100 * (1 - kept / full), 1),
                               "source_error_lines": len(parsed.error_lines), "invalid": bad}
    return {
        "files": len(files), "kilobytes": round(size / 1024, 1),
        "grammar_parse_mb_s": round(size / MB / parse_s, 2),
        "cold_skeleton_mb_s": round(size / MB / cold_s, 2),
        "cold_vs_parse": round(cold_s / parse_s, 2),
        "grammar_load_ms": round(load_ms, 1),
        "token_reduction_pct": round(100 * (1 - skel_tokens / max(full_tokens, 1)), 1),
        "full_tokens": full_tokens, "skeleton_tokens": skel_tokens,
        "invalid_skeletons": invalid, "per_file": per_file,
    }


def main(argv: list[str] | None = None) -> int:
    opts = common.arg_parser(__doc__.splitlines()[0]).parse_args(argv)
    common.setup_logging(opts.verbose)
    passes = 1 if opts.quick else 5
    results = {language: measure(language, files, passes) for language, files in corpus().items()}
    metrics: dict = {}
    baseline: dict = {}
    targets = []
    for language, r in results.items():
        metrics[f"{language}.token_reduction_pct"] = r["token_reduction_pct"]
        metrics[f"{language}.cold_skeleton_mb_s"] = r["cold_skeleton_mb_s"]
        metrics[f"{language}.invalid_skeletons"] = r["invalid_skeletons"]
        metrics[f"{language}.grammar_load_ms"] = r["grammar_load_ms"]
        baseline[f"{language}.grammar_parse_mb_s"] = r["grammar_parse_mb_s"]
        files = f"{r['files']} files, {r['kilobytes']} KB"
        targets += [
            common.target(f"{language}: token reduction of skeletons", f">= {MIN_REDUCTION_PCT:.0f} %",
                          f"{r['token_reduction_pct']} %", r["token_reduction_pct"] >= MIN_REDUCTION_PCT,
                          f"{r['full_tokens']} full tokens, {files}"),
            common.target(f"{language}: skeletons that fail to parse or lose a name", "0",
                          f"{r['invalid_skeletons']} of {r['files']}", r["invalid_skeletons"] == 0, files),
            common.target(f"{language}: cold skeleton vs the grammar's own parse", f"<= {MAX_COLD_VS_PARSE:.0f}x",
                          f"{r['cold_vs_parse']}x ({r['cold_skeleton_mb_s']} MB/s)",
                          r["cold_vs_parse"] <= MAX_COLD_VS_PARSE,
                          f"parse {r['grammar_parse_mb_s']} MB/s; grammar load {r['grammar_load_ms']} ms"),
        ]
    notes = ["cold skeleton includes a second parse: every skeleton is re-parsed to check it",
             "per-file figures are in raw.<language>.per_file"]
    path = common.write_result("languages", quick=opts.quick, metrics=metrics, baseline=baseline,
                               targets=targets, notes=notes, out_dir=opts.out_dir, extra=results)
    common.print_result(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
