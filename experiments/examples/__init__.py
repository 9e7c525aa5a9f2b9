"""The course gallery: runnable, plotted examples of every RNN type."""
