"""Security of the tools: path confinement, symlinks, and approval as defence in depth.

Every refusal test also proves that nothing outside the project changed.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools import ToolError, describe, execute, resolve_in_root

SECRET = "TOP-SECRET-OUTSIDE-CONTENT"


def make_tree(base: Path) -> tuple[Path, Path]:
    """base/outside (must stay untouched) and base/proj (the root) with links pointing out."""
    outside = base / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET + "\n")
    (outside / "sub" / "deep.txt").write_text(SECRET + " deep\n")
    (outside / "victim.txt").write_text("victim original\n")

    root = base / "proj"
    (root / "src" / "nested").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print('inside')\n")
    (root / "notes.txt").write_text("inside notes\n")
    (root / "link_file").symlink_to(outside / "secret.txt")              # file link out
    (root / "link_rel").symlink_to("../outside/secret.txt")              # relative file link out
    (root / "link_dir").symlink_to(outside)                              # dir link out
    (root / "src" / "nested" / "deep_link").symlink_to(outside / "sub")  # deep dir link out
    (root / "dangling").symlink_to(outside / "not_yet_there.txt")        # dangling link out
    (root / "victim_link").symlink_to(outside / "victim.txt")
    (root / "loop_a").symlink_to(root / "loop_b")
    (root / "loop_b").symlink_to(root / "loop_a")
    (root / "inner_link").symlink_to(root / "src")                       # stays inside: allowed
    return root, outside


def snapshot(directory: Path) -> dict[str, bytes | str]:
    state: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames:
            state[os.path.relpath(os.path.join(dirpath, name), directory)] = "<dir>"
        for name in filenames:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as fh:
                state[os.path.relpath(full, directory)] = fh.read()
    return state


@pytest.fixture
def tree(tmp_path):
    root, outside = make_tree(tmp_path)
    before = snapshot(outside)
    yield root, outside
    assert snapshot(outside) == before, "something outside the project root changed"


# Write tests only use escapes that land inside pytest's tmp dir, so even a broken confinement
# check could not damage the machine ("../../etc/passwd" is tmp_path/../etc/passwd).  The real
# /etc/passwd is only ever *read*.
ESCAPES = [
    "..",
    "../outside/secret.txt",
    "../../etc/passwd",
    "ABS:outside/victim.txt",
    "src/../../outside/secret.txt",
    "src/nested/../../../outside/victim.txt",
    "link_file",
    "link_rel",
    "link_dir",
    "link_dir/secret.txt",
    "link_dir/sub/deep.txt",
    "src/nested/deep_link",
    "src/nested/deep_link/deep.txt",
    "dangling",
    "victim_link",
]


# ------------------------------------------------------------ resolve_in_root

def absolute(root: Path, user_path: str) -> str:
    """'ABS:rel' -> an absolute path relative to the directory holding proj/ and outside/."""
    return str(root.parent / user_path[4:]) if user_path.startswith("ABS:") else user_path


@pytest.mark.parametrize("user_path", ESCAPES + ["/etc/passwd"])
def test_resolve_in_root_refuses_escapes(tree, user_path):
    root, _ = tree
    with pytest.raises(ToolError, match="outside the project root"):
        resolve_in_root(root, absolute(root, user_path))


def test_resolve_in_root_refuses_absolute_outside_path(tree):
    root, outside = tree
    with pytest.raises(ToolError, match="is outside the project root"):
        resolve_in_root(root, str(outside / "secret.txt"))


def test_resolve_in_root_messages(tree):
    root, _ = tree
    with pytest.raises(ToolError, match=r"^path '\.\./x' is outside the project root$"):
        resolve_in_root(root, "../x")
    with pytest.raises(ToolError, match=r"^path 'link_dir/x' leads outside the project root through a symlink$"):
        resolve_in_root(root, "link_dir/x")
    with pytest.raises(ToolError, match="contains a NUL byte"):
        resolve_in_root(root, "notes.txt\x00.png")
    with pytest.raises(ToolError, match="path is empty"):
        resolve_in_root(root, "")
    with pytest.raises(ToolError, match="path is empty"):
        resolve_in_root(root, "  \t")
    with pytest.raises(ToolError, match="must be a string"):
        resolve_in_root(root, b"notes.txt")  # type: ignore[arg-type]


def test_resolve_in_root_refuses_symlink_loops(tree):
    root, _ = tree
    with pytest.raises(ToolError, match="loop_a"):
        resolve_in_root(root, "loop_a")


def test_resolve_in_root_allows_paths_that_stay_inside(tree):
    root, _ = tree
    real = root.resolve()
    assert resolve_in_root(root, ".") == real
    assert resolve_in_root(root, "notes.txt") == real / "notes.txt"
    assert resolve_in_root(root, str(root / "notes.txt")) == real / "notes.txt"  # absolute, inside
    assert resolve_in_root(root, "inner_link/main.py") == real / "src" / "main.py"
    assert resolve_in_root(root, "src/nested/../main.py") == real / "src" / "main.py"
    assert resolve_in_root(root, "new/dir/file.txt") == real / "new" / "dir" / "file.txt"
    assert resolve_in_root(root, "~") == real / "~"  # no home expansion


def test_root_given_through_a_symlink_still_works(tree, tmp_path):
    root, _ = tree
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    assert execute("read_file", {"path": "notes.txt"}, alias) == "inside notes\n"
    with pytest.raises(ToolError, match="outside the project root"):
        execute("read_file", {"path": "../outside/secret.txt"}, alias)


# ------------------------------------------------- every tool refuses escapes

READ_TOOLS = [
    ("read_file", lambda p: {"path": p}),
    ("list_directory", lambda p: {"path": p}),
    ("search_text", lambda p: {"pattern": "SECRET", "path": p}),
    ("file_skeleton", lambda p: {"path": p}),
]
WRITE_TOOLS = [
    ("write_file", lambda p: {"path": p, "content": "pwned\n"}),
    ("patch_file", lambda p: {"path": p, "old": "victim original", "new": "pwned"}),
]


@pytest.mark.parametrize("user_path", ESCAPES)
@pytest.mark.parametrize("tool,make_args", READ_TOOLS + WRITE_TOOLS, ids=lambda v: v if isinstance(v, str) else "")
def test_every_path_tool_refuses_escapes(tree, tool, make_args, user_path):
    root, _ = tree
    with pytest.raises(ToolError, match="outside the project root"):
        execute(tool, make_args(absolute(root, user_path)), root, approved=True)


@pytest.mark.parametrize("tool,make_args", READ_TOOLS, ids=lambda v: v if isinstance(v, str) else "")
def test_read_tools_refuse_system_files(tree, tool, make_args):
    root, _ = tree
    with pytest.raises(ToolError, match="outside the project root"):
        execute(tool, make_args("/etc/passwd"), root)


@pytest.mark.parametrize("tool,make_args", READ_TOOLS + WRITE_TOOLS, ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("user_path,message", [("notes.txt\x00", "NUL byte"), ("", "path is empty")])
def test_every_path_tool_refuses_nul_and_empty(tree, tool, make_args, user_path, message):
    root, _ = tree
    with pytest.raises(ToolError, match=message):
        execute(tool, make_args(user_path), root, approved=True)


def test_write_through_symlinked_dir_creates_nothing_outside(tree):
    root, outside = tree
    for target in ("link_dir/new.txt", "link_dir/newdir/new.txt", "src/nested/deep_link/new.txt", "dangling"):
        with pytest.raises(ToolError, match="outside the project root"):
            execute("write_file", {"path": target, "content": "pwned"}, root, approved=True)
    assert not (outside / "new.txt").exists()
    assert not (outside / "newdir").exists()
    assert not (outside / "not_yet_there.txt").exists()
    # the link itself was not replaced by a regular file either
    assert (root / "dangling").is_symlink()


def test_list_root_does_not_follow_links_out(tree):
    root, _ = tree
    listing = execute("list_directory", {}, root).splitlines()
    assert "link_dir -> [outside the project root; not followed]" in listing
    assert "link_file -> [outside the project root; not followed]" in listing
    assert "inner_link/ -> src/" in listing
    assert "loop_a -> [outside the project root; not followed]" in listing  # unresolvable: treated as outside
    assert not any("secret.txt" in line or "sub/" == line for line in listing)
    nested = execute("list_directory", {"path": "src/nested"}, root)
    assert nested == "deep_link -> [outside the project root; not followed]"


def test_search_does_not_follow_links_out(tree):
    root, _ = tree
    assert execute("search_text", {"pattern": "SECRET"}, root) == "no matches for 'SECRET' in '.'"
    assert execute("search_text", {"pattern": "SECRET", "path": "src"}, root) == "no matches for 'SECRET' in 'src'"
    # links that stay inside are searched (through the link's own path)
    assert execute("search_text", {"pattern": "inside", "path": "inner_link"}, root) == \
        "src/main.py:1: print('inside')"


def test_describe_flags_escapes_and_writes_nothing(tree):
    root, _ = tree
    for name, make_args in READ_TOOLS + WRITE_TOOLS:
        d = describe(name, make_args("link_dir/secret.txt"), root)
        assert "outside the project root" in d["error"], d
        assert SECRET not in repr(d)


# --------------------------------------------- approval as defence in depth

@pytest.mark.parametrize("flag", [False, None, 1, "yes", "true"])
def test_write_file_refused_without_approval(tree, flag):
    root, _ = tree
    kwargs = {} if flag is None else {"approved": flag}
    with pytest.raises(ToolError, match="needs the developer's approval"):
        execute("write_file", {"path": "created.txt", "content": "x"}, root, **kwargs)
    with pytest.raises(ToolError, match="needs the developer's approval"):
        execute("write_file", {"path": "notes.txt", "content": "x"}, root, **kwargs)
    assert not (root / "created.txt").exists()
    assert (root / "notes.txt").read_text() == "inside notes\n"


def test_patch_file_refused_without_approval(tree):
    root, _ = tree
    with pytest.raises(ToolError, match="needs the developer's approval"):
        execute("patch_file", {"path": "notes.txt", "old": "inside", "new": "changed"}, root)
    assert (root / "notes.txt").read_text() == "inside notes\n"


def test_run_shell_refused_without_approval(tree):
    root, _ = tree
    marker = root / "marker"
    with pytest.raises(ToolError, match="needs the developer's approval"):
        execute("run_shell", {"command": f"touch {marker}"}, root)
    with pytest.raises(ToolError, match="needs the developer's approval"):
        execute("run_shell", {"command": f"touch {marker}"}, root, approved="yes")
    assert not marker.exists()
    # the same call with approval does run, so the marker really would have appeared
    execute("run_shell", {"command": f"touch {marker}"}, root, approved=True)
    assert marker.exists()


def test_approval_is_checked_before_arguments(tree):
    root, _ = tree
    # even malformed calls to an approval tool are refused as unapproved, not half-processed
    with pytest.raises(ToolError, match="needs the developer's approval"):
        execute("write_file", {"path": "../outside/victim.txt"}, root)


# ---------------------------------------------------------------- hypothesis

@pytest.fixture(scope="module")
def fuzz_tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("fuzz"))


NAMES = ["..", ".", "", "src", "nested", "notes.txt", "link_file", "link_rel", "link_dir", "deep_link",
         "dangling", "loop_a", "inner_link", "outside", "proj", "secret.txt", "sub", "~", "...", " ",
         "\x00", "new"]
PATHS = st.one_of(
    st.lists(st.sampled_from(NAMES + ["etc", "passwd"]), max_size=8).map("/".join),
    st.lists(st.sampled_from(NAMES + ["etc", "passwd"]), min_size=1, max_size=8).map(lambda p: "/" + "/".join(p)),
    st.text(alphabet=st.sampled_from(list("./\\~-_ a\x00")) | st.characters(), max_size=30),
)
# For writes: relative paths that climb at most two levels (to pytest's tmp dir, never to /),
# and absolute paths only under the fuzz base -- harmless even if confinement were broken.
WRITE_PATHS = st.one_of(
    st.lists(st.sampled_from(NAMES), max_size=8).map("/".join),
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=8).map(lambda p: "ABS:" + "/".join(p)),
    st.text(alphabet=st.sampled_from(list("./\\~-_ a\x00")) | st.characters(), max_size=30),
).map(lambda p: p if p.startswith("ABS:") else p.lstrip("/")).filter(lambda p: p.count("..") <= 2)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user_path=PATHS)
def test_random_paths_never_resolve_outside_root(fuzz_tree, user_path):
    root, _ = fuzz_tree
    real_root = root.resolve()
    try:
        resolved = resolve_in_root(root, user_path)
    except ToolError:
        return
    assert resolved.is_relative_to(real_root)
    assert resolved.resolve() == resolved  # fully resolved: no symlink left to follow
    # and the tools built on it never show outside content
    try:
        out = execute("read_file", {"path": user_path}, root)
    except ToolError:
        return
    assert SECRET not in out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user_path=WRITE_PATHS)
def test_random_path_writes_never_touch_outside(fuzz_tree, user_path):
    root, outside = fuzz_tree
    base = root.parent
    before = snapshot(base / "outside"), sorted(os.listdir(base))
    path = absolute(root, user_path)
    try:
        out = execute("write_file", {"path": path, "content": "fuzz\n"}, root, approved=True)
    except ToolError as exc:
        assert str(exc)  # refused with a message; nothing may have changed outside
    else:
        written = resolve_in_root(root, path)
        assert written.is_relative_to(root.resolve()) and written.read_text() == "fuzz\n", out
    assert (snapshot(base / "outside"), sorted(os.listdir(base))) == before


def test_symlink_loop_then_dotdot_cannot_reach_an_outside_link(tmp_path):
    """Found by the random-path property test: resolve() stops at a loop and keeps a link."""
    import os

    from tools import ToolError, resolve_in_root
    root = tmp_path / "proj"
    root.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    os.symlink(root / "loop_b", root / "loop_a")
    os.symlink(root / "loop_a", root / "loop_b")
    os.symlink(outside, root / "link_file")
    with pytest.raises(ToolError):
        resolve_in_root(root, "loop_a/../link_file")
