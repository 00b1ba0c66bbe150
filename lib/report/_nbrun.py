"""Headless notebook driver for seitpp (called by lib/report/notebooks.ts; not a public API).

Reads one JSON job from stdin:
  {"kernel": "deno", "notebooks": [{"path": ..., "out": ...}], "env": {...},
   "cell_timeout": 600, "quiet": 0.3, "startup_timeout": 60}
For each notebook: starts a fresh kernel (cwd = the notebook's folder) with Debian's
jupyter_client, runs the code cells in order, writes the executed copy to "out", and prints one
JSON line with per-cell status to stdout. Progress goes to stderr.

Deno's kernel can report status "idle" (and even send execute_reply) before the last outputs of
a cell arrive, so a cell is finished only when the reply and idle have both come AND iopub has
been quiet for "quiet" seconds. Late outputs are routed by their parent msg_id to the cell
that produced them, and update_display_data rewrites every output carrying that display_id.

Now and then jupyter_client refuses a message of a freshly started Deno kernel as "Invalid
Signature" (its HMAC does not match the connection file's key; seen in this project's CI and
front-end checks, under load and once on an idle machine). Such a message is never used: the
notebook is run once more from the start with a new kernel, and the result says so ("attempts",
"refused": which message, and whether its session was the kernel's own or one never seen from it).
A second refusal fails the notebook.
"""

import json
import os
import queue
import sys
import time

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.manager import KernelManager


ATTEMPTS = 2


class RefusedMessage(Exception):
    """A kernel message whose HMAC signature did not match the connection key."""


def _frame_bytes(f):
    return bytes(f.bytes) if hasattr(f, "bytes") else bytes(f)


def guard_signatures(session):
    """Makes session.deserialize raise RefusedMessage, describing the message, on a bad HMAC.

    The description names the message's type and id and says whether its session id is one the
    kernel has used in messages that verified (the kernel's own message, signed wrongly) or one
    never seen from it (a message from another process on the same port).
    """
    original = session.deserialize
    sessions = set()
    verified = 0

    def deserialize(msg_list, content=True, copy=True):
        nonlocal verified
        try:
            msg = original(msg_list, content=content, copy=copy)
        except ValueError as e:
            if not str(e).startswith("Invalid Signature"):
                raise
            try:
                header = json.loads(_frame_bytes(msg_list[1]).decode("utf-8"))
            except Exception:  # noqa: BLE001 - any undecodable header is described as such
                header = {}
            sid = header.get("session")
            whose = ("a session this kernel used in verified messages" if sid in sessions else
                     "a session never seen from this kernel" if sessions else
                     "no message had verified yet")
            raise RefusedMessage(
                f"{header.get('msg_type', '?')} message {header.get('msg_id', '?')} refused as "
                f"Invalid Signature after {verified} verified messages "
                f"({len(msg_list)} frames; session {sid}: {whose})") from e
        verified += 1
        sid = msg.get("header", {}).get("session")
        if sid:
            sessions.add(sid)
        return msg

    session.deserialize = deserialize


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def source_of(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


class Collector:
    """Turns iopub messages into nbformat outputs, per cell."""

    def __init__(self, ncells):
        self.outputs = [[] for _ in range(ncells)]
        self.counts = [None] * ncells
        self.display_ids = {}  # display_id -> list of (cell, output index)
        self.clear_pending = [False] * ncells
        self.updates = 0

    def _clear(self, c):
        self.outputs[c] = []
        for key in list(self.display_ids):
            self.display_ids[key] = [(ci, oi) for (ci, oi) in self.display_ids[key] if ci != c]

    def _append(self, c, out):
        if self.clear_pending[c]:
            self.clear_pending[c] = False
            self._clear(c)
        self.outputs[c].append(out)
        return len(self.outputs[c]) - 1

    def handle(self, c, msg):
        t = msg["msg_type"]
        content = msg["content"]
        if t == "execute_input":
            self.counts[c] = content.get("execution_count")
        elif t == "stream":
            outs = self.outputs[c]
            if (not self.clear_pending[c] and outs and outs[-1]["output_type"] == "stream"
                    and outs[-1]["name"] == content["name"]):
                outs[-1]["text"] += content["text"]
            else:
                self._append(c, {"output_type": "stream", "name": content["name"],
                                 "text": content["text"]})
        elif t in ("display_data", "execute_result"):
            out = {"output_type": t, "data": content.get("data", {}),
                   "metadata": content.get("metadata", {})}
            if t == "execute_result":
                out["execution_count"] = content.get("execution_count")
            i = self._append(c, out)
            did = (content.get("transient") or {}).get("display_id")
            if did is not None:
                self.display_ids.setdefault(did, []).append((c, i))
        elif t == "update_display_data":
            did = (content.get("transient") or {}).get("display_id")
            self.updates += 1
            for (ci, oi) in self.display_ids.get(did, []):
                self.outputs[ci][oi]["data"] = content.get("data", {})
                self.outputs[ci][oi]["metadata"] = content.get("metadata", {})
        elif t == "error":
            self._append(c, {"output_type": "error", "ename": content.get("ename", ""),
                             "evalue": content.get("evalue", ""),
                             "traceback": content.get("traceback", [])})
        elif t == "clear_output":
            if content.get("wait"):
                self.clear_pending[c] = True
            else:
                self._clear(c)


def run_notebook(job, item):
    path, out_path = item["path"], item["out"]
    t_start = time.time()
    result = {"path": path, "out": out_path, "cells": [], "error": None,
              "kernel_seconds": None, "seconds": None, "updates": 0, "late": 0}
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    if nb.get("nbformat") != 4:
        result["error"] = f"expected nbformat 4, got {nb.get('nbformat')!r}"
        return result
    cells = nb.get("cells", [])
    col = Collector(len(cells))
    env = dict(os.environ)
    env.update(job.get("env", {}))
    km = KernelManager(kernel_name=job.get("kernel", "deno"))
    cwd = os.path.dirname(os.path.abspath(path))
    km.start_kernel(cwd=cwd, env=env)
    kc = km.client()
    guard_signatures(kc.session)
    kc.start_channels()
    try:
        try:
            kc.wait_for_ready(timeout=job.get("startup_timeout", 60))
        except RuntimeError as e:
            result["error"] = f"kernel did not start: {e}"
            return result
        result["kernel_seconds"] = round(time.time() - t_start, 3)
        quiet = float(job.get("quiet", 0.3))
        cell_timeout = float(job.get("cell_timeout", 600))
        owner = {}  # msg_id -> cell index
        stopped = False
        for c, cell in enumerate(cells):
            if cell.get("cell_type") != "code":
                continue
            code = source_of(cell)
            if stopped:
                result["cells"].append({"index": c, "status": "skipped", "seconds": 0})
                continue
            if code.strip() == "":
                result["cells"].append({"index": c, "status": "ok", "seconds": 0})
                continue
            t0 = time.time()
            msg_id = kc.execute(code, store_history=True, allow_stdin=False, stop_on_error=True)
            owner[msg_id] = c
            got_reply = got_idle = False
            reply_status = None
            last_iopub = time.time()
            status = None
            while True:
                now = time.time()
                if now - t0 > cell_timeout:
                    status = "timeout"
                    km.interrupt_kernel()
                    break
                if not km.is_alive():
                    status = "died"
                    break
                try:
                    while True:
                        reply = kc.get_shell_msg(timeout=0)
                        if reply["parent_header"].get("msg_id") == msg_id:
                            got_reply = True
                            reply_status = reply["content"].get("status")
                            if col.counts[c] is None:
                                col.counts[c] = reply["content"].get("execution_count")
                except queue.Empty:
                    pass
                try:
                    msg = kc.get_iopub_msg(timeout=0.02)
                except queue.Empty:
                    msg = None
                if msg is not None:
                    last_iopub = time.time()
                    parent = msg["parent_header"].get("msg_id")
                    target = owner.get(parent, c)
                    if target != c:
                        result["late"] += 1
                    if msg["msg_type"] == "status":
                        if parent == msg_id and msg["content"]["execution_state"] == "idle":
                            got_idle = True
                    else:
                        col.handle(target, msg)
                    continue
                if got_reply and got_idle and time.time() - last_iopub >= quiet:
                    break
            has_error = any(o["output_type"] == "error" for o in col.outputs[c])
            if status is None:
                status = "error" if (reply_status != "ok" or has_error) else "ok"
            entry = {"index": c, "status": status, "seconds": round(time.time() - t0, 3)}
            if status == "timeout":
                entry["message"] = f"no reply within {cell_timeout:g} s (kernel interrupted)"
            if status == "died":
                entry["message"] = "the kernel died"
            result["cells"].append(entry)
            log(f"  cell {c + 1}: {status} ({entry['seconds']:.2f} s)")
            if status != "ok":
                stopped = True
                if status == "died":
                    break
        result["updates"] = col.updates
    finally:
        try:
            kc.stop_channels()
        finally:
            km.shutdown_kernel(now=True)
    for c, cell in enumerate(cells):
        if cell.get("cell_type") == "code":
            cell["outputs"] = col.outputs[c]
            cell["execution_count"] = col.counts[c]
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")
    result["seconds"] = round(time.time() - t_start, 3)
    return result


def failed(item, error):
    """The result line of a notebook that could not be run through."""
    return {"path": item["path"], "out": item["out"], "cells": [], "error": error}


def main():
    job = json.load(sys.stdin)
    name = job.get("kernel", "deno")
    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        print(json.dumps({"fatal": f'no Jupyter kernel "{name}" is installed: '
                                   f"run `deno jupyter --install`"}), flush=True)
        return 2
    for item in job["notebooks"]:
        log(f"{item['path']}:")
        refused = []
        for attempt in range(1, ATTEMPTS + 1):
            try:
                res = run_notebook(job, item)
            except RefusedMessage as e:
                refused.append(str(e))
                if attempt < ATTEMPTS:
                    log(f"  the kernel's {e}; running the notebook again with a new kernel "
                        f"(attempt {attempt + 1} of {ATTEMPTS})")
                    continue
                res = failed(item, "kernel messages refused as Invalid Signature in every "
                                   "attempt: " + "; ".join(refused))
            except Exception as e:  # report and go on with the next notebook
                res = failed(item, f"{type(e).__name__}: {e}")
            break
        res["attempts"] = attempt
        res["refused"] = refused
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
