"""Sending from the Discussion panel: `ChatSending`, a mixin of `gui.context_state.ContextState`.

Send checks the token budget first (`gui/send_check.py`: refused over the model's window,
confirmed over the project budget or when large, or sent trimmed by a measured plan), then
hands the message and the context to the `ChatWorker`; `_poll_chat()` (called by `poll()`)
applies the streamed reply on the GUI thread.  *Regenerate* asks the last question again.
What the mixin uses of its host is declared at the top of the class, so mypy checks both
sides.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from file_cache import ContextBundle, context_window_for
from gui import send_check
from gui.mma_display import CHAT_USAGE

if TYPE_CHECKING:
    from gui.chat import ChatWorker
    from gui.context_build import BuildInputs, ContextBuilder
    from models import TierUsage
    from project import DiscussionEntry, ProjectConfig

log = logging.getLogger(__name__)


class ChatSending:
    """Send / Regenerate / Stop and the reply stream (mixin of ContextState)."""
    # ---------------------------------------------------------------- provided by the host (ContextState)
    busy: bool
    ai_input: str
    bundle: ContextBundle | None
    config: ProjectConfig
    current_model: str
    generation: int
    background_builds: bool
    pending_send: send_check.SendCheck | None
    _trim_future: concurrent.futures.Future[send_check.TrimOffer] | None
    _request_ids: itertools.count
    _request: dict[str, Any] | None
    _dirty: bool
    stream_text: str
    stream_chunks: int
    last_reply: str
    last_usage: dict[str, int]
    scroll_history: bool
    chat: ChatWorker
    project_dir: Any
    cache: Any

    tool_approver: Callable[..., dict] | None
    chat_usage: TierUsage
    chat_usage_version: int

    if TYPE_CHECKING:
        @property
        def entries(self) -> list[DiscussionEntry]: ...

        def add_error(self, source: str, message: str, hint: str = "") -> None: ...

        def add_entry(self, role: str, content: str) -> bool: ...

        def delete_entry(self, index: int) -> bool: ...

        def refresh(self, force: bool = False) -> bool: ...

        def mark_changed(self, settle: float = 0.0) -> None: ...

        def poll(self, max_events: int = 10_000) -> int: ...

        def _inputs(self) -> BuildInputs: ...

        def _builder(self) -> ContextBuilder: ...

    # ------------------------------------------------------------------ sending
    def check_send(self, text: str) -> send_check.SendCheck:
        """The budget verdict for sending `text` with the current (fresh) context."""
        bundle = self.bundle
        assert bundle is not None, "call refresh() first"
        price = self.config.price_for(self.current_model)
        return send_check.check(text, bundle, self.current_model, context_window_for(self.current_model),
                                self.config.budgets.max_context_tokens,
                                price.input if price is not None else None, self.generation)

    def _ask_for_trim(self, check: send_check.SendCheck) -> None:
        """Work out the trim offer for a Send over a limit (off the GUI thread in background mode)."""
        target = check.limit - check.message_tokens
        if self.background_builds:
            check.offer_pending = True
            self._trim_future = self._builder().submit(send_check.plan_trim, self._inputs(), self.cache, target)
        else:
            check.offer = send_check.plan_trim(self._inputs(), self.cache, target)

    def send_message(self, confirmed: bool = False, trimmed: bool = False) -> bool:
        """Send `ai_input` with the curated context; the reply streams in through `poll()`.

        Budget rules (gui/send_check.py): over the model's window it is refused; over the
        project budget, or large, it waits for `confirmed`; `trimmed` sends what the trim
        offer leaves.  A Send that waits is `pending_send` (the panel shows the dialog)."""
        if self.busy:
            self.add_error("send", "a reply is still streaming", "wait for it or press Stop")
            return False
        text = self.ai_input.strip()
        if not text:
            self.add_error("send", "the message box is empty", "type a message first")
            return False
        # A send never uses stale text: this waits for a build in flight (the Send button and
        # Ctrl+Enter are disabled meanwhile, so only scripts and the hook API ever wait here).
        self.refresh(force=self._dirty)
        bundle = self.bundle
        assert bundle is not None, "refresh() always leaves a bundle"
        check = self.check_send(text)
        pending = self.pending_send
        if pending is not None and pending.message == text and pending.generation == check.generation:
            check = pending                 # keep the offer already worked out
        if trimmed:
            if check.offer is None and not check.offer_pending:
                self._ask_for_trim(check)
            if check.offer is None:
                self.pending_send = check
                self.add_error("send", "the trim plan is still being worked out", "try again in a moment")
                return False
            if not check.offer.fits or check.offer.bundle is None:
                self.pending_send = check
                self.add_error("send", f"not sent: even the full trim plan does not get under "
                               f"{check.offer.target:,} tokens", "remove files or pick a model with a larger window")
                return False
            bundle = check.offer.bundle
        elif check.verdict == "refuse":
            if check.offer is None and not check.offer_pending:
                self._ask_for_trim(check)
            self.pending_send = check
            self.add_error("send", check.describe(), "remove files, switch them to skeleton/outline, or send trimmed")
            return False
        elif check.verdict == "confirm" and not confirmed:
            if check.over_budget and check.offer is None and not check.offer_pending:
                self._ask_for_trim(check)
            self.pending_send = check
            return False
        self.pending_send = None
        if check.over_budget and not trimmed:
            log.warning("sending %d tokens over the %d-token project budget (confirmed)", check.total,
                        check.budget)
        images = [{"mime_type": img["mime_type"], "data": img["data"]} for img in bundle.images]
        request_id = next(self._request_ids)
        self._request = {"id": request_id, "config": self.config,
                         "discussion": self.config.active_discussion}
        if not self.add_entry("user", text):
            self._request = None
            return False
        self.ai_input = ""
        self.stream_text = ""
        self.stream_chunks = 0
        self.busy = True
        self.chat.start(request_id, bundle.markdown, text, images, str(self.project_dir), self.tool_approver)
        return True

    def cancel_send(self) -> None:
        """The user closed the Send dialog: nothing goes out, the message stays in the box."""
        self.pending_send = None

    def can_regenerate(self) -> bool:
        entries = self.entries
        return (not self.busy and len(entries) >= 2 and entries[-1].role == "assistant"
                and entries[-2].role == "user")

    def regenerate(self) -> bool:
        """Ask again: the last reply is dropped and its question is sent once more (with the
        same budget checks as Send).  If it does not go out, the question waits in the box."""
        if not self.can_regenerate():
            self.add_error("send", "nothing to regenerate", "the last entry must be a reply to your message")
            return False
        question = self.entries[-2].content
        self.delete_entry(len(self.entries) - 1)
        self.delete_entry(len(self.entries) - 1)
        self.ai_input = question
        return self.send_message()

    def cancel(self) -> bool:
        if not self.busy:
            return False
        self.chat.cancel()
        return True

    def _poll_chat(self, max_events: int) -> int:
        handled = 0
        for kind, request_id, data in self.chat.drain(max_events):
            handled += 1
            if kind == "usage":            # billed, whichever request it was (even a cancelled one)
                self.chat_usage.add(CHAT_USAGE, data["input_tokens"], data["output_tokens"], data["model"],
                                    cache=data.get("cache"))
                self.chat_usage_version += 1
                continue
            request = self._request
            if request is None or request_id != request["id"]:
                log.debug("dropping %s for finished request %s", kind, request_id)
                continue
            if kind == "chunk":
                self.stream_text += data
                self.stream_chunks += 1
            elif kind == "done":
                self._finish(request, data["text"], error=None)
                self.last_usage = {"input_tokens": data["input_tokens"],
                                   "output_tokens": data["output_tokens"]}
            elif kind == "error":
                partial = data["partial"] or self.stream_text
                self.add_error("send", data["message"], data["hint"])
                self._finish(request, partial, error=data["message"])
            else:
                log.error("unknown chat event %r", kind)
        return handled

    def _finish(self, request: dict[str, Any], text: str, error: str | None) -> None:
        self._request = None
        self.busy = False
        self.last_reply = text
        self.stream_text = ""
        if not text:
            return
        if request["config"] is not self.config:
            log.warning("reply arrived after the project changed; kept only as last reply")
            return
        name = request["discussion"]
        if name not in self.config.discussions:
            log.warning("discussion %r is gone; the reply goes to %r", name, self.config.active_discussion)
            name = self.config.active_discussion
        content = text if error is None else f"{text}\n\n[incomplete: {error}]"
        self.config.add_entry("assistant", content, discussion=name)
        self.scroll_history = True
        self.mark_changed()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Poll until no send is in flight (for scripts and tests; the GUI just polls per frame)."""
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            self.poll()
            if self.busy:
                time.sleep(0.005)
        return not self.busy
