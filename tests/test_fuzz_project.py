"""Whatever is in mma_project.toml, the app gets a config and a clear error, and the file is untouched."""
import tempfile
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import project

toml_scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=15),
                         st.floats(allow_nan=False, allow_infinity=False))
toml_values = st.recursive(toml_scalars, lambda c: st.one_of(
    st.lists(toml_scalars, max_size=4), st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=8), c, max_size=4)),
    max_leaves=20)
known_keys = st.sampled_from(["name", "provider", "files", "screenshots", "discussions", "active_discussion",
                              "models", "budgets", "prices", "discussion_order"])


def check_load(text: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / project.PROJECT_FILE).write_bytes(text)
        cfg, error = project.load_project_or_last_good(root)
        assert isinstance(cfg, project.ProjectConfig)
        if error is not None:
            assert isinstance(error, project.ProjectFileError) and str(error)
        assert (root / project.PROJECT_FILE).read_bytes() == text       # nothing lost


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes(data):
    check_load(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(known_keys, toml_values, max_size=6))
def test_valid_toml_with_wrong_shapes(data):
    check_load(tomli_w.dumps(data).encode())
