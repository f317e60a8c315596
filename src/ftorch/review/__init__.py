"""`ftorch review`: a local web page where a person accepts, rejects and edits training examples, and reads an
evaluation's answers side by side. Nothing here is imported by other commands."""
