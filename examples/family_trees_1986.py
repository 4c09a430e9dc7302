"""Hinton's family trees (Nature 323, 1986, Figs 2-4) with chainrule's nn and optim.

24 people x 12 relationships = 104 (person 1, relationship) -> person 2 cases; 100 trained, 4
held out. The net (``chainrule.presets.FamilyTreesNet``): person 1 -> 6 units, relationship -> 6
units, both -> 12 -> 6 -> 24 logistic outputs. The paper's schedule: batch, ε 0.005 and α 0.5 for
20 sweeps, then ε 0.01 and α 0.9, 1,500 sweeps; every weight × 0.998 after each change; no error
for on-units above 0.8 and off-units below 0.2. Initial range unstated (we assume ±0.3).

With those settings the net stays on a plateau (every output below 0.5). ``chainrule reproduce
rhw1986`` shows this over many seeds and finds the smallest change that learns: initial weights
±1 and ε = 0.05 after sweep 20 — the default here. ``--as-published`` runs the paper's numbers.

    python examples/family_trees_1986.py [--as-published] [seed]
"""

import sys

import numpy as np

import chainrule as cr
from chainrule import nn, optim
from chainrule.data.datasets import family_trees
from chainrule.presets import FamilyTreesNet

published = "--as-published" in sys.argv
args = [a for a in sys.argv[1:] if not a.startswith("--")]
seed = int(args[0]) if args else 0
init, eps2 = (0.3, 0.01) if published else (1.0, 0.05)

cr.manual_seed(seed)
ds = family_trees()
x, d = ds.tensors
test = np.random.default_rng(seed).choice(len(ds), 4, replace=False)
train = np.setdiff1d(np.arange(len(ds)), test)

net = FamilyTreesNet()
with cr.no_grad():
    for p in net.parameters():
        nn.init.uniform_(p, -init, init)
opt = optim.SGD(net.parameters(), lr=0.005, momentum=0.5)


xt, dt = x[train], d[train]
for sweep in range(1500):
    if sweep == 20:
        for g in (
            opt.param_groups
        ):  # (PyTorch's momentum buffer scales with the new ε; the 1986 Δw does not)
            g["lr"], g["momentum"] = eps2, 0.9
    y = net(xt)
    with cr.no_grad():  # the margin: no error for on-units > 0.8 and off-units < 0.2
        live = 1 - (((dt > 0.5) & (y > 0.8)) | ((dt < 0.5) & (y < 0.2))).float()
    E = 0.5 * ((y - dt) * live).pow(2).sum()
    opt.zero_grad()
    E.backward()
    opt.step()
    with cr.no_grad():
        for p in net.parameters():
            p.mul_(0.998)  # "decrementing every weight by 0.2% after each weight change"

with cr.no_grad():
    y = net(x)
ok = ((y > 0.5) == (d > 0.5)).all(1).numpy()  # right people on, everyone else off
print(
    f"{'as published' if published else 'U(±1), ε = 0.05'}, seed {seed}: E {float(E):.1f}; "
    f"training cases right {ok[train].sum()}/100; held-out {ok[test].sum()}/4"
)
for i in test:
    p1, rel, answers = ds.cases[i]
    guess = [ds.people[j] for j in np.nonzero(y.numpy()[i] > 0.5)[0]]
    print(f"  {p1}'s {rel}: {', '.join(answers)}; net says {', '.join(guess) or 'nobody'}")

W = net.person.weight.detach().numpy()  # (6 units, 24 people: English then Italian)
gen = np.tile([1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3], 2)
eng = np.r_[np.ones(12), np.zeros(12)]
for u, w in enumerate(W):
    r_nat = abs(np.corrcoef(w, eng)[0, 1])
    r_gen = abs(np.corrcoef(w, gen)[0, 1])
    print(f"person unit {u + 1}: |r| with nationality {r_nat:.2f}, with generation {r_gen:.2f}")
