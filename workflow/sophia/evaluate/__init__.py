"""Stage `evaluate`: one model variant scored on every configured benchmark (results/eval/{model}/{benchmark}/)."""
