package server

import (
	"github.com/dogear-dev/dogear/archive"
	"github.com/dogear-dev/dogear/registry"
	"github.com/dogear-dev/dogear/state"
)

// What the tests of this package reach inside a running server.

func (s *Server) Archiver() *archive.Archiver  { return s.archiver }
func (s *Server) Registry() *registry.Registry { return s.registry }
func (s *Server) State() state.Reader          { return s.backends.state }
