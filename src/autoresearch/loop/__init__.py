"""The research loop: policy, journal, git, and the loop that drives them."""
