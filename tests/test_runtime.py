import sys

import pytest
import torch

from legato import runtime


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_keep_freed_memory_applies_on_glibc_and_is_idempotent():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert runtime.keep_freed_memory() is True
    assert runtime.keep_freed_memory() is True
    # allocation still works after the change (large blocks now come from the heap)
    x = torch.ones(4096, 4096)
    assert float(x.sum()) == 4096 * 4096
