//! flottectl: the command-line interface.
