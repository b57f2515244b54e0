"""The naive-UDP damage analysis: each kind of damage is counted, and only an exact copy is intact."""

from __future__ import annotations

import random

import pytest

from rudp.naive import analyse, chunks

SEED = 11
DATA = random.Random(SEED).randbytes(10_000)  # 10 chunks of 1000 bytes, all distinct
PIECES = chunks(DATA, 1000)


def test_in_order_complete_arrival_is_intact():
    report = analyse(DATA, list(PIECES), 1000)
    assert report.intact and report.missing == report.duplicated == report.out_of_order == report.corrupted == 0
    assert report.sha256_received == report.sha256_original and "intact" in report.summary()


def test_each_kind_of_damage_is_counted():
    arrivals = [PIECES[0], PIECES[2], PIECES[1], PIECES[2], PIECES[3], b"\x00" * 1000] + PIECES[5:9]  # 4, 9 lost
    report = analyse(DATA, arrivals, 1000)
    assert not report.intact
    assert (report.missing, report.missing_bytes) == (2, 2000)
    assert report.duplicated == 1 and report.out_of_order == 1 and report.corrupted == 1
    assert report.arrived == len(arrivals) and report.received_bytes == 10_000  # same size, still wrong
    assert report.summary().startswith("DAMAGED: 10000 bytes received for 10000; 2 of 10 chunks missing")


def test_reordering_alone_damages_the_file():
    arrivals = list(PIECES)
    arrivals[3], arrivals[4] = arrivals[4], arrivals[3]
    report = analyse(DATA, arrivals, 1000)
    assert not report.intact and report.missing == 0 and report.out_of_order == 1


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError):
        chunks(DATA, 0)
