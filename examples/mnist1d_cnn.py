"""MNIST-1D's CNN (Greydanus & Kobak 2024) with the benchmark's settings, using chainrule directly.

The preset model ``mnist1d-cnn`` (3 strided Conv1d + Linear, 5,210 parameters), Adam with lr
1e-2, batches of 100 in order without shuffling, 6,001 steps, test accuracy every 250 steps.
Published: 94 ± 2 % (Table 1); the authors' own notebook runs end at about 92-93 %.

    python examples/mnist1d_cnn.py [steps]

``chainrule reproduce mnist1d`` runs all four models, three seeds each, next to PyTorch.
"""

import sys

import chainrule as cr
from chainrule import nn, optim, presets
from chainrule.data.datasets import mnist1d

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
cr.manual_seed(42)
x, y = mnist1d(train=True).tensors  # generated locally, cached
x_test, y_test = mnist1d(train=False).tensors

model = presets.build_model(presets.PRESETS["mnist1d-cnn"]["model"])
opt = optim.Adam(model.parameters(), lr=1e-2)
loss_fn = nn.CrossEntropyLoss()
best = 0.0
for step in range(steps + 1):
    i = (step * 100) % len(x)
    loss = loss_fn(model(x[i : i + 100]), y[i : i + 100])
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 250 == 0:
        with cr.no_grad():
            acc = float((model(x_test).argmax(1) == y_test).float().mean()) * 100
        best = max(best, acc)
        print(f"step {step:5d}  loss {float(loss):.3f}  test accuracy {acc:.1f}%")
print(f"final {acc:.1f}%, best {best:.1f}% (published 94 ± 2 %)")
