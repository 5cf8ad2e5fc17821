"""Stage `report`: the comparison table, plots, protocol cards and forgetting matrix (results/report/)."""
