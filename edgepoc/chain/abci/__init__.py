"""edgepoc as a CometBFT ABCI++ application (issue 12): the wire code is generated at install time."""
