"""Running resamplings off the GUI thread, with napari progress and cancel."""

from __future__ import annotations

from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error

from ._layers import iter_resample


class _Failed:
    """Returned by a worker whose work raised: carries the exception."""

    def __init__(self, exc):
        self.exc = exc


def error_message(exc, what="conv-resample"):
    """One line for a notification: the library's own message, no traceback."""
    if isinstance(exc, MemoryError):
        detail = str(exc) or "out of memory"
        return f"{what}: out of memory ({detail}); try a smaller image or stride"
    return f"{what}: {exc}"


def _guarded(plan, backend, preserve_dtype):
    # Exceptions become a return value so that the GUI thread can show the
    # library's message as a notification instead of napari's traceback.
    try:
        return (yield from iter_resample(plan, backend=backend, preserve_dtype=preserve_dtype))
    except Exception as exc:  # noqa: BLE001 - shown to the user
        return _Failed(exc)


def start_resample_worker(plan, *, backend, preserve_dtype, on_result, on_error=None, desc=None):
    """Start a napari ``GeneratorWorker`` resampling ``plan`` slice by slice.

    ``on_result(layer_data_tuple)`` runs on the GUI thread when it is done;
    ``on_error(message)`` (default: a napari error notification) when it
    failed. ``worker.quit()`` cancels between slices. Returns the worker.
    """
    on_error = on_error or show_error
    # The progress bar is driven from the GUI thread by the (done, total)
    # reports, so it is right however often the worker reports.
    pbar = progress(total=plan.n_slices, desc=desc or plan.kwargs["name"])

    def _yielded(value):
        done, _total = value
        pbar.update(done - pbar.n)

    def _returned(value):
        if isinstance(value, _Failed):
            on_error(error_message(value.exc, desc or "conv-resample"))
        elif value is not None:
            on_result(value)

    worker = create_worker(
        _guarded,
        plan,
        backend,
        preserve_dtype,
        _connect={"returned": _returned, "yielded": _yielded, "finished": pbar.close},
        _start_thread=False,
    )
    return worker
