#!/usr/bin/env node
import '../dist/cli/roset-mount.js';
