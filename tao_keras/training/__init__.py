"""Training: the paper's staged protocol (section 3.3), evaluation and reports."""
