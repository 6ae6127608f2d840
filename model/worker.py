"""One helper thread that runs jobs in the order they are submitted.

torch releases the GIL inside its ops, so a helper's tensor work overlaps the main thread's:
`model.animate` encodes audio a chunk ahead of the sampler and decodes vertices a chunk behind it.
"""

import queue
import threading
from collections.abc import Callable

import torch


class OrderedWorker:
    """Runs job(item) on a helper thread for each submitted item, in submission order.

    wait(n) blocks until the first n submitted items are done and re-raises a job's exception.
    close() skips what is still queued, waits for the running job and joins the thread; it is
    safe to call more than once. Jobs run without autograd (grad mode is per thread).
    """

    def __init__(self, job: Callable[[object], None], name: str = "meshtalk-worker"):
        self._job = job
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._changed = threading.Condition()
        self._done, self._error, self._closing = 0, None, False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with torch.no_grad():
            while True:
                item = self._todo.get()
                if self._closing:
                    return
                try:
                    self._job(item)
                except BaseException as error:  # noqa: BLE001 (re-raised by wait in the caller's thread)
                    with self._changed:
                        self._error = error
                        self._changed.notify_all()
                    return
                with self._changed:
                    self._done += 1
                    self._changed.notify_all()

    def submit(self, item: object) -> None:
        self._todo.put(item)

    def wait(self, n: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._done >= n or self._error is not None)
            if self._error is not None:
                raise self._error

    def close(self) -> None:
        self._closing = True
        self._todo.put(None)  # wakes the thread if it is waiting for work
        self._thread.join()
