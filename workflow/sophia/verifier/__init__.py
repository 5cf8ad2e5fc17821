"""Stage verifier: the LEVER-style verifier of one model variant (results/verifier/{model}/)."""
