"""Mirror symmetry (Nature 323, 1986, Fig. 1) with chainrule's nn and optim.

6 binary inputs -> 2 logistic hidden units -> 1 logistic output, all 64 patterns (8 of them
palindromes), weights changed once per sweep from the gradient summed over the 64 cases,
ε = 0.1, α = 0.9, initial weights uniform in ±0.3 — all as the paper states. The paper needed
1,425 sweeps. Then it prints what the paper describes: each hidden unit's weights are
mirror-symmetric in size and opposite in sign, growing from the outside in, and the two hidden
units are each other's negatives.

    python examples/symmetry_1986.py [seed]
"""

import sys

import chainrule as cr
from chainrule import nn, optim
from chainrule.data.datasets import symmetry

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
cr.manual_seed(seed)
x, d = symmetry(6).tensors

net = nn.Sequential(nn.Linear(6, 2), nn.Sigmoid(), nn.Linear(2, 1), nn.Sigmoid())
with cr.no_grad():
    for p in net.parameters():
        nn.init.uniform_(p, -0.3, 0.3)
opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
sse = nn.MSELoss(reduction="sum")

solved, sweeps = False, 0
while not solved and sweeps < 10000:
    sweeps += 1
    opt.zero_grad()
    (0.5 * sse(net(x), d)).backward()
    opt.step()
    with cr.no_grad():
        solved = bool(((net(x) - d).abs() < 0.2).all())

print(f"seed {seed}: {'solved' if solved else 'not solved'} after {sweeps} sweeps (Nature: 1,425)")
W, b = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
for name, w, bias in zip("AB", W, b):
    print(
        f"hidden {name}: inputs 1..6 " + " ".join(f"{v:+6.2f}" for v in w) + f"   bias {bias:+.2f}"
    )
print(
    "hidden -> output",
    " ".join(f"{v:+.2f}" for v in net[2].weight.detach().numpy()[0]),
    f"  output bias {net[2].bias.detach().numpy()[0]:+.2f}",
)
outer, middle, inner = (abs(W[0, i] - W[0, 5 - i]) / 2 for i in range(3))
print(
    f"unit A, mirror pairs outer : middle : inner = 1 : {middle / outer:.1f} : {inner / outer:.1f} (PDP Fig. 9: 1 : 2 : 4)"
)
