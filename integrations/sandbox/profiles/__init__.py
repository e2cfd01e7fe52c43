"""Packaged sandbox fault profiles (YAML); a package so the files ship in the wheel."""
