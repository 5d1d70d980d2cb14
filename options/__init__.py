"""Command-line options: base, train and test classes; models and datasets add theirs through hooks."""
