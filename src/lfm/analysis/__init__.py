"""Looking at results, for notebooks and reports: the run-output reader and its tables (`results`,
`tables`), a trained model up close (`inspection`), figures (`plots`) and the demo runs the
notebooks read (`demo`). Nothing here trains; it reads what `lfm.runs` wrote."""
