"""Screenshots of the running window: read the GL back buffer, write a PNG.

`hello_imgui.final_app_window_screenshot()` only works after the app exited, so
the hook API's `screenshot` action reads the framebuffer itself: `capture()`
runs in hello_imgui's `before_swap` callback (on the GUI thread, GL context
current, the frame fully rendered and not yet swapped) and calls
`glReadPixels` through a pointer from `glfwGetProcAddress`.  The pointer comes
from the libglfw that imgui_bundle ships, so it reaches the GL dispatch of the
window's own context (imgui_bundle bundles its own libGLX/libGLdispatch; the
system libGL would not see that context).

Reading 800x600 costs ~3 ms; PNG encoding (Pillow, compress level 1) ~7 ms.

The hook API names the file, so `check_path` keeps it under the folders the App allows
(the project and the system temp folder): whoever holds the hook token drives the app, but
still cannot overwrite files elsewhere.  The PNG is written with `atomic_write_bytes` (a
fresh temp file in the same folder, then a rename), so a planted symlink is replaced,
never followed.
"""
from __future__ import annotations

import ctypes
import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from atomic_files import atomic_write_bytes

log = logging.getLogger(__name__)

GL_PACK_ALIGNMENT = 0x0D05
GL_RGBA = 0x1908
GL_UNSIGNED_BYTE = 0x1401

_ReadPixels = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                               ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p)
_PixelStorei = ctypes.CFUNCTYPE(None, ctypes.c_uint, ctypes.c_int)
_gl: dict[str, object] = {}


class ScreenshotError(RuntimeError):
    """The framebuffer could not be read or the PNG not written."""


def check_path(path: object, allowed_folders: Iterable[str | os.PathLike]) -> Path:
    """The target of a screenshot request: an absolute `.png` path in an existing folder
    that is (after resolving symlinks) inside one of `allowed_folders`."""
    if not isinstance(path, str) or not path:
        raise ValueError("screenshot needs \"path\": an absolute file name ending in .png")
    target = Path(path)
    if not target.is_absolute() or target.suffix.lower() != ".png":
        raise ValueError(f"screenshot path must be absolute and end in .png, got {path!r}")
    if not target.parent.is_dir():
        raise ValueError(f"screenshot folder {str(target.parent)!r} does not exist")
    folder = target.parent.resolve()
    allowed = [Path(f).resolve() for f in allowed_folders]
    if not any(folder.is_relative_to(a) for a in allowed):
        raise ValueError(f"screenshot path {path!r} is outside the allowed folders "
                         f"({', '.join(str(a) for a in allowed)}); refused")
    return folder / target.name


def _gl_functions() -> tuple:
    """glReadPixels / glPixelStorei of the current context (GUI thread, context current)."""
    if not _gl:
        import imgui_bundle
        lib = ctypes.CDLL(os.path.join(os.path.dirname(imgui_bundle.__file__), "libglfw.so.3"))
        lib.glfwGetProcAddress.restype = ctypes.c_void_p
        lib.glfwGetProcAddress.argtypes = [ctypes.c_char_p]
        read, store = lib.glfwGetProcAddress(b"glReadPixels"), lib.glfwGetProcAddress(b"glPixelStorei")
        if not read or not store:
            raise ScreenshotError("glfwGetProcAddress found no glReadPixels (no current GL context?)")
        _gl["read"], _gl["store"] = _ReadPixels(read), _PixelStorei(store)
    return _gl["read"], _gl["store"]


def capture(path: Path, width: int, height: int) -> dict:
    """Write the current back buffer (`width` x `height` pixels) to `path` as an RGB PNG."""
    from PIL import Image
    if width <= 0 or height <= 0:
        raise ScreenshotError(f"nothing to capture: framebuffer is {width}x{height}")
    read, store = _gl_functions()
    buf = ctypes.create_string_buffer(width * height * 4)
    store(GL_PACK_ALIGNMENT, 1)
    read(0, 0, width, height, GL_RGBA, GL_UNSIGNED_BYTE, buf)
    # GL rows run bottom-up: a negative stride flips the image while decoding.
    image = Image.frombuffer("RGBA", (width, height), buf.raw, "raw", "RGBA", 0, -1).convert("RGB")
    png = io.BytesIO()
    image.save(png, format="PNG", compress_level=1)
    try:
        atomic_write_bytes(path, png.getvalue(), keep_mode=True)
    except OSError as exc:
        raise ScreenshotError(f"could not write {path}: {exc}") from exc
    log.info("screenshot %dx%d saved to %s", width, height, path)
    return {"path": str(path), "width": width, "height": height}
