"""Byte-level machinery behind `file_cache`'s skeleton, curated and outline views.

- `skeleton.emitter`: splices skeleton / curated text out of a tree-sitter tree.
- `skeleton.elision`: cuts function bodies before parsing, so views parse a third of the bytes.

Import views, `ASTParser` and `FileCache` from `file_cache`, the front door.
"""
