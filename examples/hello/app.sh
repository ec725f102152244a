#!/bin/sh
echo "hello from the cached build"
