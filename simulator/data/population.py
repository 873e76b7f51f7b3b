"""Users of a world: profiles (traits), genre tastes and what they saw before the run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PROFILE_COLUMNS = (
    "user_id",          # public id written to the event log
    "activity",         # expected sessions per simulated day (heavy-tailed across users)
    "conformity",       # 0..1, weight on what is popular / how close ratings stay to the crowd
    "diversity",        # 0..1, normalised genre entropy of the user's taste
    "rating_mean",      # the user's mean rating (1-5 scale)
    "rating_std",       # spread of the user's ratings
    "n_history",        # items seen before the run
)


@dataclass
class Population:
    profiles: pd.DataFrame
    taste: np.ndarray                 # (n_users, n_genres) choice affinity per genre
    rating_affinity: np.ndarray       # (n_users, n_genres) rating deviation per genre
    history: list[np.ndarray]         # item indices seen before the run, per user
    calibration: dict = field(default_factory=dict)   # fitted choice/rating coefficients
    history_ratings: list[np.ndarray] | None = None   # ratings of ``history`` (NaN-free), if known
    #: arrays of the fitted model (``recworld.simulator.data.calibration``), if fitted: user_factors
    #: (users x k), item_factors (items x k), rating_levels and rating_allowed (users x 10),
    #: item_rating_bias (items), rating_prices (10)
    fitted: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        missing = [c for c in PROFILE_COLUMNS if c not in self.profiles.columns]
        if missing:
            raise ValueError(f"population profiles miss columns {missing}")
        n = len(self.profiles)
        if self.taste.shape[0] != n or self.rating_affinity.shape[0] != n or len(self.history) != n:
            raise ValueError("population arrays disagree on the number of users")
        self.ids = self.profiles["user_id"].to_numpy(dtype=np.int64)
        if self.history_ratings is None:
            self.history_ratings = [np.empty(0) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.profiles)

    def __repr__(self) -> str:
        return f"Population({len(self)} users)"


def heavy_tailed_activity(n: int, rng: np.random.Generator, median: float, tail_index: float,
                          maximum: float) -> np.ndarray:
    """Sessions per day drawn from a Pareto law with the given median and tail index."""
    xm = median / 2 ** (1.0 / tail_index)
    u = rng.random(n)
    return np.minimum(xm * (1.0 - u) ** (-1.0 / tail_index), maximum)


def normalised_entropy(p: np.ndarray) -> np.ndarray:
    """Row-wise Shannon entropy of distributions, divided by its maximum (0..1)."""
    p = np.asarray(p, dtype=np.float64)
    s = p.sum(axis=-1, keepdims=True)
    p = np.divide(p, s, out=np.zeros_like(p), where=s > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)
    k = p.shape[-1]
    return h / np.log(k) if k > 1 else np.zeros_like(h)


# ----------------------------------------------------------------------------- sizes

#: peak memory of building and starting a parametric world, as measured (see ``estimate_world_bytes``)
BASE_BYTES = 160 * 2**20
#: a world this large gets a progress bar from the start of its build
LARGE_WORLD_USERS = 100_000
LARGE_WORLD_ITEMS = 500_000
USER_BYTES = 6 * 1024
ITEM_BYTES = 1400
EDGE_BYTES = 400


def estimate_world_bytes(n_users: int, n_items: int, n_genres: int = 12, degree: int = 0) -> int:
    """Peak memory (bytes) to build and start a world of ``n_users`` users over ``n_items`` items.

    Measured as the ``ru_maxrss`` of one process per size (synthetic catalog, parametric brains,
    popularity recommender, small-world graph of degree 6, build then 15 simulated minutes):

    ==========  =======  ==========  =========================================
    users       items    peak (MiB)  note
    ==========  =======  ==========  =========================================
    1,000       1,000    171         the interpreter and libraries: ~125 MiB
    100,000     1,000    733
    200,000     1,000    1,293       graph none / scale_free / random: 1,279-1,291
    400,000     1,000    2,406
    1,000,000   1,000    5,714       build 132 s (parts 24 s, per-user state 108 s)
    1,000       100,000  301         graph none
    1,000       1e6      1,468       graph none
    50,000      1,000    447 / 661 / 908   degree 6 / 30 / 60
    ==========  =======  ==========  =========================================

    i.e. about 5.6-6.1 KiB per user (each user's random generator, state and simpy process;
    the social graph is built, and freed, before them), about 1.4 KiB per item, and about
    360-370 bytes per friendship (networkx while generating, then follower and friend sets). The
    estimate takes 6 KiB per user (slightly above the 1M-user figure), 16 bytes per user and
    genre (the taste arrays), 1.4 KiB per item and 400 bytes per friendship beyond degree 6.
    """
    per_user = USER_BYTES + 16 * n_genres
    graph = EDGE_BYTES * n_users * max(0, degree - 6) // 2
    return int(BASE_BYTES + per_user * n_users + ITEM_BYTES * n_items + graph)


def available_memory() -> tuple[int, str] | None:
    """(bytes this process may still use, where that figure comes from), or None if unknown.

    The smallest of: ``MemAvailable`` in /proc/meminfo (psutil's ``available`` where there is no
    /proc), the cgroup's memory limit minus its usage (containers), and the address-space limit
    (``ulimit -v``) minus the address space in use.
    """
    found: list[tuple[int, str]] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append((int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"))
                    break
    except (OSError, ValueError, IndexError):
        pass                                       # no /proc (not Linux): psutil below
    if not found:
        try:
            import psutil

            found.append((int(psutil.virtual_memory().available), "available memory (psutil)"))
        except Exception:  # noqa: BLE001 - psutil missing or unsupported here: no figure
            pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file, encoding="ascii") as f:
                limit = f.read().strip()
            with open(usage_file, encoding="ascii") as f:
                usage = int(f.read().strip())
            if limit != "max" and int(limit) < 2**60:
                found.append((max(0, int(limit) - usage), f"the cgroup memory limit ({limit_file})"))
            break
        except (OSError, ValueError):
            continue
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            used = 0
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        used = int(line.split()[1]) * 1024
            found.append((max(0, soft - used), "the address-space limit (ulimit -v)"))
    except (ImportError, OSError, ValueError):
        pass
    return min(found) if found else None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def memory_problem(n_users: int, n_items: int, n_genres: int = 12, degree: int = 0) -> str | None:
    """Why a world of this size will not fit in the memory left (a message with the estimate
    and the limit), or None when it fits or the limit is unknown."""
    need = estimate_world_bytes(n_users, n_items, n_genres, degree)
    have = available_memory()
    if have is None or need <= have[0]:
        return None
    fit = max(0, (have[0] - BASE_BYTES - ITEM_BYTES * n_items) // (USER_BYTES + 16 * n_genres))
    return (f"{n_users:,} users over {n_items:,} items need about {_gb(need)} of memory to build, but only "
            f"{_gb(have[0])} is available ({have[1]}); lower population.size (about {fit:,} users fit) or run on "
            "a machine with more memory")


def memory_note(n_users: int, n_items: int, n_genres: int = 12, degree: int = 0) -> str:
    """One line with the memory estimate of a world of this size and the memory available."""
    need = estimate_world_bytes(n_users, n_items, n_genres, degree)
    have = available_memory()
    return (f"building {n_users:,} users over {n_items:,} items: about {_gb(need)} of memory"
            + (f" ({_gb(have[0])} available)" if have else ""))
