"""Write ``norse_1.1.0_lsnn.pt``: Norse's own ``LSNNRecurrent`` run on the inputs of
``tests/equivalence/test_conventions.py::_norse_setup`` (float64), so the suite holds its transcription of
Norse to Norse itself without installing Norse (not a dependency: an sdist on this project's index, with nir
and nirtorch).

    pip install norse==1.1.0 && python tests/equivalence/data/make_norse_lsnn.py

Two synaptic settings: ``instant`` (tau_syn_inv·dt = 1: the current does not outlive its step, the setting the
equality with our ALIF uses) and ``norse_default`` (Norse's default tau_syn_inv = 200 /s, dt = 1 ms: the
current is low-pass filtered, 0.8 of it carried to the next step). Each: the spikes [T, B, H], and the gradients
of sum(c · z) with respect to the input and recurrent weights (c fixed, seeded).
"""

from __future__ import annotations

import sys
from pathlib import Path

import norse
import torch
from norse.torch import LSNNParameters, LSNNRecurrent

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.equivalence.test_conventions import _norse_setup  # noqa: E402 - the same inputs as the test

assert norse.__version__ == "1.1.0", norse.__version__


def run(tau_syn_inv: float) -> dict[str, torch.Tensor]:
    _, x, (w_in, w_rec, tau_mem_inv, tau_adapt_inv, v_th, beta_n, dt) = _norse_setup()
    p = LSNNParameters(tau_syn_inv=torch.as_tensor(tau_syn_inv, dtype=torch.float64),
                       tau_mem_inv=torch.as_tensor(tau_mem_inv, dtype=torch.float64),
                       tau_adapt_inv=torch.as_tensor(tau_adapt_inv, dtype=torch.float64),
                       v_leak=torch.as_tensor(0.0, dtype=torch.float64), v_th=torch.as_tensor(v_th, dtype=torch.float64),
                       v_reset=torch.as_tensor(0.0, dtype=torch.float64), beta=torch.as_tensor(beta_n, dtype=torch.float64),
                       method="super", alpha=100.0)  # fmt: skip
    layer = LSNNRecurrent(w_in.shape[1], w_in.shape[0], p=p, dt=dt,
                          input_weights=torch.nn.Parameter(w_in.clone()),
                          recurrent_weights=torch.nn.Parameter(w_rec.clone())).double()  # fmt: skip
    z, _ = layer(x)
    c = torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g_in, g_rec = torch.autograd.grad((c * z).sum(), [layer.input_weights, layer.recurrent_weights])
    return {"z": z.detach(), "g_in": g_in, "g_rec": g_rec, "tau_syn_inv": torch.tensor(tau_syn_inv)}


if __name__ == "__main__":
    _, _, args = _norse_setup()
    dt = args[-1]
    out = {"instant": run(1.0 / dt), "norse_default": run(200.0)}
    path = Path(__file__).with_name("norse_1.1.0_lsnn.pt")
    torch.save(out, path)
    for k, v in out.items():
        print(k, "spike rate", float(v["z"].mean()), "->", path)
