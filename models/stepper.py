"""A fast NumPy twin of the latent RNN's dreaming step, for CPU rates of tens of thousands of steps/s."""

from __future__ import annotations

import math

import numpy as np
import torch

from .rnn import LOG_SIGMA_MAX, LOG_SIGMA_MIN, LatentRNN

NOISE_BLOCK = 1024  # steps of random numbers drawn at once


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function of a fresh array (overwritten in place)."""
    x *= 0.5
    np.tanh(x, out=x)
    x += 1.0
    x *= 0.5
    return x


class LatentStepper:
    """Steps one dream of a LatentRNN in float32 NumPy: the maths of `rnn.step`, sample, next_latent.

    Mixture components are chosen with the Gumbel-max trick, so each step consumes K Gumbel and
    D normal draws from the stepper's own PCG64 generator: a seed reproduces the trajectory.
    """

    def __init__(self, rnn: LatentRNN, *, temperature: float = 1.0, seed: int = 0) -> None:
        c = rnn.config
        self.config, self.temperature = c, max(float(temperature), 1e-3)
        self.layers = [self._layer_weights(rnn.core, i) for i in range(c.num_layers)]
        self.head_w = rnn.head.weight.detach().cpu().numpy().astype(np.float32)
        self.head_b = rnn.head.bias.detach().cpu().numpy().astype(np.float32)
        k, rows = c.components, 2 * c.latent_size
        self._mixture = self.head_w[:k], self.head_b[:k]
        spans = [slice(k + i * rows, k + (i + 1) * rows) for i in range(k)]  # mu and log sigma of each
        self._gaussians = [(self.head_w[span], self.head_b[span]) for span in spans]
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Start drawing random numbers from a fresh generator seeded with `seed`."""
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._noise_at = NOISE_BLOCK  # the next draw fills a new block from the new generator

    @staticmethod
    def _layer_weights(core: torch.nn.Module, i: int) -> tuple[np.ndarray, ...]:
        get = lambda n: getattr(core, f"{n}_l{i}").detach().cpu().numpy().astype(np.float32)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def state_from_torch(self, state) -> list:
        """Torch state (L,1,H) or ((L,1,H),(L,1,H)) -> per-layer NumPy state."""
        if state is None:
            zeros = np.zeros(self.config.hidden_size, np.float32)
            return [(zeros, zeros) if self.config.cell == "lstm" else zeros
                    for _ in range(self.config.num_layers)]
        if self.config.cell == "lstm":
            h, c = (s[:, 0].detach().cpu().numpy() for s in state)
            return [(h[i], c[i]) for i in range(len(h))]
        return list(state[:, 0].detach().cpu().numpy())

    def state_to_torch(self, state: list, device: torch.device | str = "cpu"):
        """Per-layer NumPy state -> torch state with batch 1 (for `rnn.step`)."""
        if self.config.cell == "lstm":
            h = torch.from_numpy(np.stack([s[0] for s in state]))[:, None]
            c = torch.from_numpy(np.stack([s[1] for s in state]))[:, None]
            return h.to(device), c.to(device)
        return torch.from_numpy(np.stack(state))[:, None].to(device)

    def _draw(self) -> tuple[np.ndarray, np.ndarray]:
        if self._noise_at >= NOISE_BLOCK:
            k, d = self.config.components, self.config.latent_size
            self._gumbel = self.rng.gumbel(size=(NOISE_BLOCK, k)).astype(np.float32)
            self._normal = self.rng.standard_normal((NOISE_BLOCK, d), dtype=np.float32)
            self._noise_at = 0
        i = self._noise_at
        self._noise_at += 1
        return self._gumbel[i], self._normal[i]

    def core(self, x: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        """One step of the recurrent core: latent (D,) -> top hidden (H,), new state."""
        new = []
        for (w_ih, w_hh, b_ih, b_hh), s in zip(self.layers, state):
            if self.config.cell == "gru":
                gi = np.dot(w_ih, x)
                gi += b_ih
                gh = np.dot(w_hh, s)
                gh += b_hh
                H = s.shape[0]
                rz = gi[:2 * H]
                rz += gh[:2 * H]
                rz = _sigmoid(rz)
                n = gh[2 * H:]
                n *= rz[:H]
                n += gi[2 * H:]
                n = np.tanh(n, out=n)
                x = s - n
                x *= rz[H:]
                x += n
                new.append(x)
            else:
                h, c = s
                g = np.dot(w_ih, x)
                g += np.dot(w_hh, h)
                g += b_ih
                g += b_hh
                H = h.shape[0]
                candidate = np.tanh(g[2 * H:3 * H])
                gates = _sigmoid(g)  # input, forget, (overwritten candidate), output
                c = gates[H:2 * H] * c + gates[:H] * candidate
                x = gates[3 * H:] * np.tanh(c)
                new.append((x, c))
        return x, new

    def head_value(self, hidden: np.ndarray, gumbel: np.ndarray, normal: np.ndarray) -> np.ndarray:
        """Hidden (H,) and noise -> the sampled head value (D,) (deterministic head: its mean)."""
        c, d = self.config, self.config.latent_size
        if c.head == "deterministic":
            return self.head_w @ hidden + self.head_b
        pi_w, pi_b = self._mixture
        logits = np.dot(pi_w, hidden)
        logits += pi_b
        logits *= 1.0 / self.temperature
        logits += gumbel
        w, b = self._gaussians[int(logits.argmax())]  # only the chosen Gaussian is computed
        raw = np.dot(w, hidden)
        raw += b
        sigma = np.minimum(np.maximum(raw[d:], LOG_SIGMA_MIN), LOG_SIGMA_MAX)
        np.exp(sigma, out=sigma)
        sigma *= math.sqrt(self.temperature)
        sigma *= normal
        sigma += raw[:d]
        return sigma

    def next_latent(self, x: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Current latent and head value -> next latent (residual step, sphere projection)."""
        nxt = x + value if self.config.residual else value
        if self.config.sphere:
            d = nxt.shape[0]
            nxt -= np.add.reduce(nxt) / d
            nxt *= 1.0 / max(math.sqrt(np.dot(nxt, nxt) / d), 1e-6)
        return nxt.astype(np.float32, copy=False)

    def run(self, x: np.ndarray, state: list, steps: int,
            out: np.ndarray | None = None) -> tuple[np.ndarray, list]:
        """Advance `steps` times from latent x (D,); write each new latent into out[i] if given."""
        for i in range(steps):
            hidden, state = self.core(x, state)
            x = self.next_latent(x, self.head_value(hidden, *self._draw()))
            if out is not None:
                out[i] = x
        return x, state
