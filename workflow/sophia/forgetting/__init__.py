"""The forgetting matrix's measurements: the held-out answer loss of one model variant (and of the
intermediate curriculum steps its job owns) on every curriculum dataset's eval split, per example,
so the report can bootstrap paired differences between variants."""
