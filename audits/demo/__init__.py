"""Demo: takes a seed and sizes; gives synthetic claims, an audit sample with planted errors and the truth
file, for the README's demo and the tests. The domain (`audits/` outside this package) never imports it."""
