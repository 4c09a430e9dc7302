"""XOR as in PDP vol. 1 ch. 8 (Rumelhart, Hinton & Williams 1986), with chainrule's nn and optim.

A 2-2-1 net of logistic units, sum-squared error E = ½ Σ (y − d)², and the 1986 rule
Δw(t) = −ε ∂E/∂w + α Δw(t−1) — which is ``optim.SGD(lr=ε, momentum=α)`` for a constant ε —
applied once per sweep through the four patterns (the Nature letter's batch mode). Initial
weights uniform in ±0.3. It stops when every output is within 0.2 of its target.

    python examples/xor_1986.py [seed]

The many-seed version (with the 2-1-1 net with direct input->output links, per-pattern updates
and the published counts) is ``chainrule reproduce rhw1986``.
"""

import sys

import chainrule as cr
from chainrule import nn, optim
from chainrule.data.datasets import xor

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
cr.manual_seed(seed)
x, d = xor().tensors  # inputs 00 01 10 11, targets 0 1 1 0

net = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1), nn.Sigmoid())
with cr.no_grad():
    for p in net.parameters():  # biases are weights from an always-on unit: same range
        nn.init.uniform_(p, -0.3, 0.3)
opt = optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
sse = nn.MSELoss(reduction="sum")

sweeps = 0
while sweeps < 5000:
    sweeps += 1
    opt.zero_grad()
    y = net(x)
    E = 0.5 * sse(y, d)  # summed over the cases, not averaged
    E.backward()
    opt.step()
    with cr.no_grad():
        y = net(x)
    if ((y - d).abs() < 0.2).all():
        break

print(
    f"seed {seed}: {'solved' if ((y - d).abs() < 0.2).all() else 'not solved'} after {sweeps} sweeps (PDP: 'hundreds' of runs, 2 stuck)"
)
for xi, yi in zip(x.tolist(), y.tolist()):
    print(f"  {xi[0]:.0f}{xi[1]:.0f} -> {yi[0]:.3f}")
