"""Direct-definition references for the tests: explicit loops, no shared code.

They follow DESIGN §2 literally, one output (or input) pixel at a time, on
spatial-only arrays; they are slow and meant for small shapes.
"""

import numpy as np

NP_PAD_MODE = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
}


def direct_down(x, w, stride, dilation, pads, mode="zeros"):
    """``y[o] = sum_t w[t] * xpad[s*o + d*t]`` with ``xpad = pad(x)``."""
    x = np.asarray(x, dtype=np.float64)
    xpad = np.pad(x, pads, mode=NP_PAD_MODE[mode])
    out_shape = tuple(
        (n - (d * (k - 1) + 1)) // s + 1
        for n, k, s, d in zip(xpad.shape, w.shape, stride, dilation)
    )
    y = np.zeros(out_shape)
    for o in np.ndindex(out_shape):
        acc = 0.0
        for t in np.ndindex(w.shape):
            idx = tuple(s * oi + d * ti for oi, ti, s, d in zip(o, t, stride, dilation))
            acc += w[t] * xpad[idx]
        y[o] = acc
    return y


def direct_up(y, w, stride, dilation, pad, output_padding):
    """``z[s*i + d*t - p] += w[t] * y[i]``, PyTorch's output length."""
    y = np.asarray(y, dtype=np.float64)
    out_shape = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n, k, s, d, p, op in zip(y.shape, w.shape, stride, dilation, pad, output_padding)
    )
    z = np.zeros(out_shape)
    for i in np.ndindex(y.shape):
        for t in np.ndindex(w.shape):
            j = tuple(s * ii + d * ti - p for ii, ti, s, d, p in zip(i, t, stride, dilation, pad))
            if all(0 <= jj < n for jj, n in zip(j, out_shape)):
                z[j] += w[t] * y[i]
    return z
