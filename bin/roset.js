#!/usr/bin/env node
import '../dist/cli/roset.js';
