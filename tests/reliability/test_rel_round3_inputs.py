"""Round three, item 9 (settings): ``SKU_PRICES`` reads only a bounded regular file and only finite, bounded prices.
Each failed before its fix (the FIFO case hung start-up; it runs in a thread here so that the test stays bounded)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from licensing.errors import ConfigurationError
from licensing.settings import load_settings


def load_within(env: dict[str, str], seconds: float = 5.0) -> BaseException | None:
    """What load_settings raised (None if it returned), failing the test if it did not return in time."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            load_settings(env)
            outcome.append(None)
        except BaseException as exc:  # handed back to the test
            outcome.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"load_settings({env}) did not return within {seconds} s"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_a_fifo_as_the_price_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "prices.csv"
    os.mkfifo(fifo)
    error = load_within({"SKU_PRICES": str(fifo)})
    assert isinstance(error, ConfigurationError) and "SKU_PRICES" in str(error)


@pytest.mark.parametrize("make", ["device", "too-big"])
def test_a_device_or_an_oversized_price_file_is_refused(make: str, tmp_path: Path) -> None:
    if make == "device":
        path = Path("/dev/zero")
        if not path.exists():
            pytest.skip("no /dev/zero here")
    else:
        path = tmp_path / "prices.csv"
        with path.open("w") as handle:
            handle.write("sku,price\n")
            handle.writelines(f"SKU{i},1.0\n" for i in range(120_000))  # about 1.3 MB
    error = load_within({"SKU_PRICES": str(path)})
    assert isinstance(error, ConfigurationError) and "SKU_PRICES" in str(error)


@pytest.mark.parametrize("price", ["1e308", "1e7", "inf", "nan", "-1"])
def test_prices_are_finite_and_bounded(price: str) -> None:
    error = load_within({"SKU_PRICES": f"SPE_E3={price}"})
    assert isinstance(error, ConfigurationError) and "SKU_PRICES" in str(error)


def test_a_normal_price_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("sku,price\nSPE_E3,36.00\nEMS,10.60\n", encoding="utf-8")
    assert load_settings({"SKU_PRICES": str(path)}).sku_prices == (("SPE_E3", 36.0), ("EMS", 10.6))
