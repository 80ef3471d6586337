"""Tests of zerodown.django."""
