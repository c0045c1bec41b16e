"""Central-difference gradient checks in float64.

``check_gradients(f, params, analytic)`` perturbs every entry of every
parameter array by +-eps, evaluates the scalar loss ``f(params)`` twice and
compares the slope with the analytic gradient:

    numeric[i] = (f(p + eps e_i) - f(p - eps e_i)) / (2 eps)
    error = ||analytic - numeric||_2 / max(||analytic||_2 + ||numeric||_2, floor)

The error of a correct backward pass is about eps^2 |f'''| + 1e-16 |f| / eps,
i.e. 1e-9 to 1e-7 for eps = 1e-6 and O(1) losses; a wrong one is O(0.01) or
more. A check only catches bugs the test data can reach: use weights of scale
>= 0.5, non-zero initial states and masks with holes, or a wrong derivative
of tanh or a missing carry path hides behind near-linear, near-zero states
(which is how the course code's bugs survived its own checks).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

# Below this the gradient is zero for all practical purposes and the error is
# measured in absolute terms (an exactly-zero gradient then gives error 0).
_FLOOR = 1e-10


def numeric_gradient(f: Callable[[dict], float], params: dict, name: str, eps: float = 1e-6,
                     indices: np.ndarray | None = None) -> np.ndarray:
    """Central differences of ``f`` w.r.t. ``params[name]`` (float64, modified in place
    and restored). ``indices``: flat indices to perturb (all when None); the
    others are left 0 in the result, which has the shape of ``params[name]``."""
    array = params[name]
    if array.dtype != np.float64:
        raise TypeError(f"gradient checks need float64 parameters; {name} is {array.dtype}")
    flat = array.reshape(-1)  # a view: writing to it perturbs params[name]
    if not np.shares_memory(flat, array):
        raise ValueError(f"parameter {name} must be contiguous to be perturbed in place")
    grad = np.zeros(flat.shape, dtype=np.float64)
    for i in (range(flat.size) if indices is None else indices):
        saved = flat[i]
        flat[i] = saved + eps
        plus = f(params)
        flat[i] = saved - eps
        minus = f(params)
        flat[i] = saved
        grad[i] = (plus - minus) / (2 * eps)
    return grad.reshape(array.shape)


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``||a - n|| / max(||a|| + ||n||, 1e-10)`` over whole arrays."""
    diff = np.linalg.norm(np.ravel(analytic) - np.ravel(numeric))
    scale = np.linalg.norm(np.ravel(analytic)) + np.linalg.norm(np.ravel(numeric))
    return float(diff / max(scale, _FLOOR))


def check_gradients(f: Callable[[dict], float], params: dict[str, np.ndarray],
                    analytic: Mapping[str, np.ndarray], eps: float = 1e-6,
                    max_entries: int | None = None, seed: int = 0) -> dict[str, float]:
    """Relative error of ``analytic[name]`` against central differences, per name.

    ``f(params) -> float`` is the scalar loss, evaluated with ``params`` modified
    in place (so it must read the arrays from the dict it is given each time);
    every array is restored afterwards. Names in ``params`` without an
    analytic gradient are not checked. ``max_entries`` checks a random subset
    of that many entries per array (the analytic gradient is compared on the
    same entries only), for arrays too large to perturb one by one.
    """
    rng = np.random.default_rng(seed)
    errors = {}
    for name, grad in analytic.items():
        size = params[name].size
        indices = None
        if max_entries is not None and size > max_entries:
            indices = np.sort(rng.choice(size, max_entries, replace=False))
        numeric = numeric_gradient(f, params, name, eps, indices)
        if indices is None:
            errors[name] = relative_error(grad, numeric)
        else:
            errors[name] = relative_error(np.ravel(grad)[indices], np.ravel(numeric)[indices])
    return errors
