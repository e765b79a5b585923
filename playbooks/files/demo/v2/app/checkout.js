console.log('new checkout');
