"""The seed's swiss roll, reproduced exactly and seeded."""

import numpy as np
import torch
from sklearn.datasets import make_swiss_roll

import scorelab as sl
from scorelab.data.toy import numpy_seed


def test_swiss_roll_is_the_seeds_construction():
    generator = torch.Generator().manual_seed(7)
    x = sl.data.load("swiss_roll", 1000, generator=generator)
    seed = numpy_seed(torch.Generator().manual_seed(7))
    expected = make_swiss_roll(1000, noise=1.0, random_state=seed)[0][:, [0, 2]] / 10.0
    assert x.shape == (1000, 2) and x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-6)


def test_swiss_roll_is_seeded():
    def draw(seed):
        return sl.data.load("swiss_roll", 200, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))
