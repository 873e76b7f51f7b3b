"""Progress bars for long work (world runs, training, studies)."""

from __future__ import annotations


def progress_bar(iterable=None, *, enabled: bool = True, **kw):
    """A tqdm bar (a notebook widget where one can be drawn), or a silent one.  Plain tqdm
    when disabled: ``tqdm.auto`` warns in notebooks without ipywidgets even when hidden."""
    if enabled:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(iterable, disable=not enabled, **kw)
